#!/bin/sh
# keygated's request path allocates (almost) nothing: allocator calls per
# allowed /check, counted by tests/fixtures/alloccount.c (LD_PRELOAD;
# SIGUSR2 writes the count) around 1,000 requests on one kept-alive
# connection, each with 9 headers as nginx's auth subrequest sends them,
# on the shipped Pro stack (limits raised):
#   - a Pro key without the concurrency limiter: at most 10 per /check;
#   - the Pro plan with it: at most 10 per /check (its answer carries
#     a new X-Keygate-Lease each time: 3 more calls in libmicrohttpd,
#     which copies every header it is given; and OpenSSL 3.0 allocates
#     a digest context at each EVP_DigestInit, 1 per check), its DELETE
#     /leases at most 4.  Each window of 1,000 also counts some 30 calls
#     made once (the client's connection, the count's own file write):
#     10.05 allows 50 of them and fails at one more call per check.
# Then the answers stay each their own under load (keygated_reply.c
# edits one response per thread): 8 connections at once, 2,400 checks,
# every X-Keygate-Lease seen once.
. "${KEYGATE_SRCDIR:-.}/tests/keygated/lib.sh"

command -v python3 >/dev/null || { echo "python3 is needed"; exit 77; }
PRELOAD=$B/tests/fixtures/.libs/alloccount.so
[ -r "$PRELOAD" ] || { echo "tests/fixtures/alloccount.so was not built"; exit 77; }
# A sanitizer's allocator must stay the only one.
if grep -q -- '-fsanitize' "$B/config.log" 2>/dev/null &&
   grep -q '^CFLAGS=.*-fsanitize' "$B/config.log"; then
    echo "sanitizer build: the counter cannot interpose malloc"; exit 77
fi

python3 - "$S/conf/keygate.yaml" "$T/policy.yaml" <<'PY'
import re, sys
s = open(sys.argv[1]).read()
s = re.sub(r'count: \d+', 'count: 1000000000000', s)
s += """
  pro-nolease:
    extends: free
    priority: 2
    limit:
      - module: fixed_window
        control: requisite
        options: {name: hour, count: 1000000000000, window: 1h}
      - module: fixed_window
        control: requisite
        options: {name: day, count: 1000000000000, window: 1d}
"""
open(sys.argv[2], 'w').write(s)
PY
POLICY=$T/policy.yaml
KEY=$(new_key plain pro-nolease)
LKEY=$(new_key lease pro)
[ -n "$KEY" ] && [ -n "$LKEY" ] && ok "keys created" || bad "keys"

KG_ALLOCCOUNT_FILE=$T/allocs LD_PRELOAD=$PRELOAD start_keygated
export KG_ALLOCCOUNT_FILE=
unset LD_PRELOAD

# count: the allocator calls so far (SIGUSR2 appends them to the file).
count() {
    n0=$(cat "$T/allocs" 2>/dev/null | wc -l)
    kill -USR2 "$KGD_PID"
    wait_for 100 sh -c "[ \$(cat '$T/allocs' | wc -l) -gt $n0 ]" || { bad "no count"; finish; }
    tail -1 "$T/allocs"
}

# client.py PORT KEY N RELEASE: N checks on one connection (and each
# lease's DELETE when RELEASE is 1); prints "checks releases".
cat >"$T/client.py" <<'PY'
import http.client, sys
port, key, n, release = int(sys.argv[1]), sys.argv[2], int(sys.argv[3]), sys.argv[4] == "1"
c = http.client.HTTPConnection("127.0.0.1", port)
h = {"Authorization": "Bearer " + key, "User-Agent": "test_allocs", "Accept": "*/*",
     "X-Original-Method": "GET", "X-Original-URI": "/v1/scrape?url=x",
     "X-Forwarded-For": "198.51.100.7", "X-Real-IP": "198.51.100.7",
     "X-Request-Id": "4bf92f3577b34da6a3ce929d0e0e4736"}   # and Host: 9
checks = releases = 0
for i in range(n):
    c.request("GET", "/check", headers=h)
    r = c.getresponse(); r.read()
    assert r.status == 200, r.status
    checks += 1
    lease = r.getheader("X-Keygate-Lease")
    if release and lease:
        c.request("DELETE", "/leases/" + lease, headers={"User-Agent": "test_allocs"})
        r = c.getresponse(); r.read()
        assert r.status == 204, r.status
        releases += 1
print(checks, releases)
PY

# per_check KEY RELEASE: allocator calls per check (with its release);
# warms up first (the thread's request, response and buffers).
per_request() {
    python3 "$T/client.py" "$KGD_PORT" "$1" 100 "$2" >/dev/null || { bad "client"; return; }
    c0=$(count)
    set -- $(python3 "$T/client.py" "$KGD_PORT" "$1" 1000 "$2") || { bad "client"; return; }
    c1=$(count)
    echo "$(( (c1 - c0) * 100 / 1000 )) $1 $2"   # hundredths of a call
}

set -- $(per_request "$KEY" 0)
a=$1
echo "# allocator calls per /check, Pro without concurrency: $(python3 -c "print($a / 100)")"
[ "$a" -le 1000 ] && ok "<= 10 allocator calls per allowed /check ($(python3 -c "print($a / 100)"))" \
    || bad "$(python3 -c "print($a / 100)") allocator calls per allowed /check (goal <= 10)"

set -- $(per_request "$LKEY" 1)
pair=$1
[ "$3" = 1000 ] && ok "1000 leases released" || bad "released $3 of 1000 leases"
# The check alone: the pair minus a release measured on its own below.
python3 - "$KGD_PORT" "$LKEY" 1000 >"$T/leases" <<'PY'
import http.client, sys
port, key, n = int(sys.argv[1]), sys.argv[2], int(sys.argv[3])
c = http.client.HTTPConnection("127.0.0.1", port)
for i in range(n):
    c.request("GET", "/check", headers={"Authorization": "Bearer " + key})
    r = c.getresponse(); r.read()
    print(r.getheader("X-Keygate-Lease"))
PY
cat >"$T/release.py" <<'PY'
import http.client, sys
c = http.client.HTTPConnection("127.0.0.1", int(sys.argv[1]))
for line in open(sys.argv[2]):
    c.request("DELETE", "/leases/" + line.strip(), headers={"User-Agent": "t"})
    r = c.getresponse(); r.read()
    assert r.status == 204, r.status
PY
c0=$(count)
python3 "$T/release.py" "$KGD_PORT" "$T/leases" || bad "releases"
c1=$(count)
rel=$(( (c1 - c0) * 100 / 1000 ))
chk=$(( pair - rel ))
echo "# allocator calls per /check + DELETE /leases, Pro: $(python3 -c "print($pair / 100)"); the DELETE alone: $(python3 -c "print($rel / 100)")"
[ "$chk" -le 1005 ] && ok "<= 10 allocator calls per allowed /check with a lease ($(python3 -c "print($chk / 100)"))" \
    || bad "$(python3 -c "print($chk / 100)") allocator calls per /check with a lease (at most 10)"
[ "$rel" -le 400 ] && ok "<= 4 allocator calls per DELETE /leases ($(python3 -c "print($rel / 100)"))" \
    || bad "$(python3 -c "print($rel / 100)") allocator calls per DELETE /leases"

# Under load, every answer is its own: 8 connections at once.
python3 - "$KGD_PORT" "$LKEY" >"$T/par" <<'PY'
import http.client, sys, threading
port, key = int(sys.argv[1]), sys.argv[2]
out, lock = [], threading.Lock()
def run():
    c = http.client.HTTPConnection("127.0.0.1", port)
    got = []
    for i in range(300):
        c.request("GET", "/check", headers={"Authorization": "Bearer " + key})
        r = c.getresponse(); r.read()
        got.append((r.status, r.getheader("X-Keygate-Lease"), r.getheader("X-RateLimit-Remaining")))
    with lock:
        out.extend(got)
ts = [threading.Thread(target=run) for i in range(8)]
for t in ts: t.start()
for t in ts: t.join()
print(len(out), len({l for s, l, r in out}), sum(1 for s, l, r in out if s != 200 or not l))
PY
set -- $(cat "$T/par")
[ "$1" = 2400 ] && [ "$3" = 0 ] && ok "2400 checks at once, all 200 with a lease" || bad "parallel: $*"
[ "$2" = 2400 ] && ok "every lease id seen once" || bad "$2 distinct lease ids in 2400 answers"

stop_keygated
finish
