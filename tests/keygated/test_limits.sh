#!/bin/sh
# keygated at its limits (issue 16 items 5 and 6):
# - 2,000 connections at once, held open, each answered, with the soft
#   limit on open files at 1024 (a login shell's, a container's);
# - more connections at once than --max-connections: those past it get
#   503 with Retry-After and a JSON body, none waits or is closed
#   without an answer;
# - request headers up to --max-header-bytes answered, larger ones 431
#   (414 for a long request line) with an answer at every size, up to
#   past libmicrohttpd's own buffer, never a silent close;
# - HTTP/1.1 without Host: 400;
# - a NUL after a valid key: libmicrohttpd ends the value there (see
#   docs/keygated.md, "Hostile input").
# Runs under ASan/UBSan in `make check-sanitizers` too.
. "${KEYGATE_SRCDIR:-.}/tests/keygated/lib.sh"

POLICY=$T/policy.yaml
cat >"$POLICY" <<'YAML'
version: 1
credential:
  - {module: bearer, control: optional}
keystore:
  - {module: file, control: required, options: {path: keys.yaml}}
plans:
  pro: {}
YAML
KEY=$(new_key limits pro)
[ -n "$KEY" ] && ok "key created" || bad "key"

# ---- 2,000 connections at once ---------------------------------------------
# many N [close]: opens N connections at once, sends a /check with the key
# on each as soon as it is connected, and keeps every one open (HTTP/1.1
# keep-alive) until each has its answer's head or $MANY_WAIT (60) s have
# passed; prints the count of each status, "closed" (hung up without an
# answer) and "unanswered".  A 503 counts as "503" only with Retry-After
# and keygated's JSON error ("503-bare" otherwise).
many() {
    python3 - "$KGD_PORT" "$1" "$KEY" "${2:-}" "${MANY_WAIT:-60}" <<'PY'
import collections, resource, selectors, socket, sys, time
port, n, key, close = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3], sys.argv[4]
wait = float(sys.argv[5])
soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
if hard != resource.RLIM_INFINITY and hard < n + 64:
    print("skip: only %d open files" % hard); sys.exit(0)
resource.setrlimit(resource.RLIMIT_NOFILE, (n + 64, hard))
req = ("GET /check HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer %s\r\n%s\r\n"
       % (key, "Connection: close\r\n" if close else "")).encode()
sel = selectors.DefaultSelector()
socks = []
for _ in range(n):
    s = socket.socket()
    s.setblocking(False)
    try:
        s.connect(("127.0.0.1", port))
    except BlockingIOError:
        pass
    socks.append(s)
    sel.register(s, selectors.EVENT_WRITE, b"")
res = collections.Counter()
pending, deadline = n, time.time() + wait
while pending and time.time() < deadline:
    for k, ev in sel.select(1):
        s = k.fileobj
        if ev & selectors.EVENT_WRITE:
            try:
                s.sendall(req)
                sel.modify(s, selectors.EVENT_READ, b"")
            except OSError:
                res["closed"] += 1; sel.unregister(s); pending -= 1
            continue
        try:
            d = s.recv(4096)
        except OSError:
            d = b""
        buf = k.data + d
        if b"\r\n\r\n" in buf or not d:
            f = buf.split(b"\r\n", 1)[0].split(b" ")
            st = f[1].decode() if len(f) > 1 and b"\r\n" in buf else "closed"
            if st == "503":
                # the JSON body may come in the next segment
                s.setblocking(True); s.settimeout(5)
                try:
                    while b"}}" not in buf:
                        d = s.recv(4096)
                        if not d:
                            break
                        buf += d
                except OSError:
                    pass
                if (b"\r\nRetry-After: 1\r\n" not in buf
                        or b'"code":"auth_unavailable"' not in buf):
                    st = "503-bare"
            res[st] += 1
            sel.unregister(s); pending -= 1
        else:
            sel.modify(s, selectors.EVENT_READ, buf)
res["unanswered"] += pending
print(" ".join("%s=%d" % kv for kv in sorted(res.items())))
PY
}
expect_many() {  # DESC WANT-LINE N [close]
    d=$1; w=$2; shift 2
    got=$(many "$@")
    case $got in
    "$w") ok "$d: $got" ;;
    skip:*) echo "# $d: $got" ;;
    *) bad "$d: got $got, wanted $w"; tail -5 "$T/keygated.err" ;;
    esac
}

# The soft limit a login shell or a container often has (the hard one
# stays): keygated raises it for its --max-connections (4096).
ulimit -S -n 1024 2>/dev/null
[ "$(ulimit -n)" = 1024 ] || echo "# could not lower the soft limit on open files to 1024"
start_keygated --threads 2
# The kernel's queue of connections not yet accepted is as long as
# libmicrohttpd's limit (4096 + 1040; capped by net.core.somaxconn), not
# 1024, which
# 2,000 clients connecting at once overflowed.
if command -v ss >/dev/null && [ -r /proc/sys/net/core/somaxconn ]; then
    # 4096 and the 1,040 past it that get 503 (kgd_conn_hard_limit)
    want=$(cat /proc/sys/net/core/somaxconn)
    [ "$want" -gt 5136 ] && want=5136
    got=$(ss -Hltn "sport = :$KGD_PORT" | awk '{ print $3 }')
    [ "$got" = "$want" ] && ok "listen queue: $got" || bad "listen queue: $got, wanted $want"
fi
expect_many "2000 keep-alive connections at once, soft limit 1024" \
    "200=2000 unanswered=0" 2000
# The first burst's 2,000 connections are closed by the client; on a
# loaded machine keygated may not have reaped them all yet, and 4,000 at
# once is more than --max-connections: wait (at most 20 s) until they are
# gone, so that this burst is 2,000 at once too.
if command -v ss >/dev/null; then
    i=0
    while [ "$(ss -Htn state established "sport = :$KGD_PORT" 2>/dev/null | wc -l)" -gt 50 ] && [ $i -lt 100 ]; do
        sleep 0.2; i=$((i + 1))
    done
fi
expect_many "2000 connections at once, Connection: close" \
    "200=2000 unanswered=0" 2000 close
expect_status "still serving" 200 -H "Authorization: Bearer $KEY" "$KGD/check"
stop_keygated

# More connections at once than --max-connections (issue 16 item 5):
# the first 100 are served and kept open; each of the others is answered
# 503 (Retry-After, JSON) and closed.  Before, libmicrohttpd stopped
# accepting at 100 and the rest waited unanswered in the kernel's queue
# for as long as the first 100 stayed open (here: the whole 20 s).
start_keygated --threads 2 --max-connections 100
MANY_WAIT=20 expect_many "400 keep-alive connections at once, --max-connections 100" \
    "200=100 503=300 unanswered=0" 400
# With 100 served connections held open: one more that sends nothing is
# closed after 2 s idle (the overflow is for 503s; --timeout is 60 s),
# and the 503 is what a client past the limit reads.
got=$(python3 - "$KGD_PORT" "$KEY" <<'PY'
import socket, sys, time
port, key = int(sys.argv[1]), sys.argv[2]
req = ("GET /check HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer %s\r\n\r\n" % key).encode()
held = []
for _ in range(100):
    s = socket.create_connection(("127.0.0.1", port), timeout=10)
    s.sendall(req)
    if not s.recv(4096).startswith(b"HTTP/1.1 200 "):
        print("not 200"); sys.exit()
    held.append(s)
idle = socket.create_connection(("127.0.0.1", port), timeout=10)
t0 = time.time()
try:
    gone = idle.recv(4096) == b""
except OSError:
    gone = True
took = time.time() - t0
s = socket.create_connection(("127.0.0.1", port), timeout=10)
s.sendall(req)
buf = b""
while True:
    d = s.recv(4096)
    if not d:
        break
    buf += d
print("idle closed after %.0f s; %s" % (took if gone else -1, buf.split(b"\r\n")[0].decode()))
PY
)
case $got in
"idle closed after "[1-4]" s; HTTP/1.1 503 Service Unavailable") ok "past the limit: $got" ;;
*) bad "past the limit, 100 held: $got" ;;
esac
expect_status "serving again once they are gone" 200 -H "Authorization: Bearer $KEY" "$KGD/check"
expect_status "metrics" 200 "$KGD/metrics"
body_has "the 503s are counted" 'keygated_rejected_requests_total{status="503"} 301$'
stop_keygated

# A hard limit too low for --max-connections: keygated says so and lowers
# its connection limit to fit, and serves.
(ulimit -n 600 && exec "$KEYGATED" --config "$POLICY" --listen 127.0.0.1:0 \
    --access-log off --max-connections 4096) 2>"$T/low.err" &
LOW=$!
wait_for 200 grep -q "listening on" "$T/low.err"
grep -q "serving at most 365 connections per listener, not 4096 (and answering 107 more with 503)" "$T/low.err" \
    && ok "a low hard limit on open files is said, and the limit fitted" \
    || bad "no word of the open-file limit: $(cat "$T/low.err")"
kill -TERM $LOW; wait $LOW

# ---- header sizes ------------------------------------------------------------
start_keygated --max-header-bytes 16384 --max-headers 128

# libmicrohttpd's memory per connection with these options (2 x 16384 +
# 128 x 64 + 8192, tools/keygated_head.c): heads larger than that are
# refused by libmicrohttpd itself (431, no JSON body).
POOL=49152
# sizes FROM TO STEP [HEADER]: a request with one big header (X-Big, or
# HEADER), its whole head (request line + headers) FROM..TO bytes;
# prints each size whose answer is not 200 (head <= 16384) or 431
# (larger; with keygated's JSON body below the pool's size), with what
# it got ("closed": hung up without an answer), or "none".
sizes() {
    python3 - "$KGD_PORT" "$KEY" "$POOL" "$1" "$2" "$3" "${4:-X-Big}" <<'PY'
import socket, sys
port, key, pool, lo, hi, step = int(sys.argv[1]), sys.argv[2], *map(int, sys.argv[3:7])
head = (b"GET /check HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " + key.encode()
        + b"\r\n" + sys.argv[7].encode() + b": ")
wrong = []
for size in range(lo, hi + 1, step):
    n = size - len(head) - 4
    req = head + b"a" * n + b"\r\n\r\n"
    s = socket.create_connection(("127.0.0.1", port), timeout=10)
    try:
        s.sendall(req)
    except OSError:
        pass
    buf = b""
    try:
        while b"\r\n\r\n" not in buf or (b" 431 " in buf[:13] and b"}}" not in buf):
            d = s.recv(65536)
            if not d:
                break
            buf += d
    except OSError:
        pass
    s.close()
    f = buf.split(b"\r\n", 1)[0].split(b" ")
    got = f[1].decode() if len(f) > 1 else "closed"
    want = "200" if len(req) <= 16384 else "431"
    if got != want or (want == "431" and b'"code":"invalid_request"' not in buf
                       and len(req) <= pool - 2048):
        wrong.append("%d:%s" % (len(req), got))
print(" ".join(wrong) if wrong else "none")
PY
}
got=$(sizes 15800 15800 1)
[ "$got" = none ] && ok "a 15,800-byte head is answered (200)" || bad "15,800 bytes: $got"
got=$(sizes 15800 15800 1 Cookie)
[ "$got" = none ] && ok "a 15,800-byte Cookie (libmicrohttpd copies it) is answered (200)" || bad "15,800-byte Cookie: $got"
got=$(sizes 16300 16500 4)
[ "$got" = none ] && ok "16,300..16,500 bytes: 200 up to 16,384, then 431 with a JSON body" || bad "around the limit: $got"
# Up to and past the whole per-connection buffer, where libmicrohttpd
# answers 431 itself: an answer at every size.
got=$(sizes 16500 $((POOL + 2000)) 13)
[ "$got" = none ] && ok "16,500..$((POOL + 2000)) bytes: 431 at every size" || bad "past the limit: $got"
got=$(sizes $((POOL - 400)) $POOL 1)
[ "$got" = none ] && ok "the last 400 bytes below the pool's size, byte by byte: 431" || bad "below the pool's size: $got"
expect_raw_status() {  # DESC WANT 'python bytes'
    got=$(python3 -c '
import socket, sys
s = socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=10)
s.sendall(eval(sys.argv[2]))
buf = b""
while b"\r\n" not in buf:
    d = s.recv(4096)
    if not d:
        break
    buf += d
f = buf.split(b"\r\n", 1)[0].split(b" ")
print(f[1].decode() if len(f) > 1 else "closed")
' "$KGD_PORT" "$3")
    [ "$got" = "$2" ] && ok "$1: $got" || bad "$1: got $got, wanted $2"
}
expect_raw_status "a 16,342-byte head without a key: 401, the largest answer" 401 \
    "b'GET /check HTTP/1.1\r\nHost: x\r\nX-Big: ' + b'a' * 16300 + b'\r\n\r\n'"
expect_raw_status "a 17,000-byte request line" 414 \
    "b'GET /check/' + b'a' * 17000 + b' HTTP/1.1\r\nHost: x\r\n\r\n'"
expect_raw_status "a 60,000-byte request line (libmicrohttpd's own 414)" 414 \
    "b'GET /check/' + b'a' * 60000 + b' HTTP/1.1\r\nHost: x\r\n\r\n'"

# ---- Host, NUL ---------------------------------------------------------------
K="b'$KEY'"
expect_raw_status "HTTP/1.1 without Host" 400 \
    "b'GET /check HTTP/1.1\r\nAuthorization: Bearer ' + $K + b'\r\n\r\n'"
expect_raw_status "HTTP/1.0 without Host" 200 \
    "b'GET /check HTTP/1.0\r\nAuthorization: Bearer ' + $K + b'\r\n\r\n'"
expect_raw_status "a NUL inside the key: the key is cut short" 401 \
    "b'GET /check HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ' + $K[:20] + b'\x00' + $K[20:] + b'\r\n\r\n'"
# libmicrohttpd 0.9.75 ends a header value at its first NUL and shows no
# more of it (the length it gives is the cut one), so what follows a
# valid key and a NUL is never seen: the key before it is checked.
# docs/keygated.md says so; gateways refuse a NUL in a header first.
expect_raw_status "a NUL after a valid key: the value ends at the NUL" 200 \
    "b'GET /check HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ' + $K + b'\x00junk\r\n\r\n'"

expect_status "metrics" 200 "$KGD/metrics"
body_has "our 414s are counted" 'keygated_rejected_requests_total{status="414"} [1-9]'
body_has "our 431s are counted" 'keygated_rejected_requests_total{status="431"} [1-9]'
stop_keygated
finish
