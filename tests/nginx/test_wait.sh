#!/bin/sh
# ngx_http_keygate_module with stores and limits that wait on the
# network (issue 22: "never blocking the event loop"; docs/nginx.md),
# against a real slapd and a real redis-server on loopback:
# - LDAP key store, one worker: with slapd hung (SIGSTOP), a key in the
#   ldap line's cache is answered at once, and so is a `keygate off`
#   location, while an uncached key's lookup waits on nginx's thread pool
#   (its request suspended); slapd resumed (SIGCONT), that request ends
#   200 and is logged with its $status; a client that hung up meanwhile
#   is logged 499, the worker unharmed.  With the check on the event loop
#   (the module before keygate_thread_pool) the cached key and the
#   public location wait behind the hung lookup;
# - a fixed_window limit with `backend: redis`: the Free key's 10/hour
#   gives ten 200s then 429 with Retry-After; with Redis hung a
#   `keygate off` location still answers at once and the limited request
#   gets 503 after command_timeout_ms; 2 workers and 16 concurrent
#   clients admit exactly 10 in all, counted in Redis;
# - a pool whose queue is full answers 503 auth_unavailable at once;
#   nginx reloaded from a policy that never waits into the LDAP one gets
#   its pool then;
# - `keygate_thread_pool NAME;` naming a pool no `thread_pool` defines
#   fails `nginx -t` with nginx's own error naming it.
KEYGATE_SRCDIR=${KEYGATE_SRCDIR:-.}
export KEYGATE_SRCDIR
. "$KEYGATE_SRCDIR/tests/keygated/lib.sh"
# (before any ok/bad or bg_start: it sources tests/lib.sh again)
. "$S/tests/integration/slapd_env.sh"
. "$S/tests/nginx/lib.sh"

if [ ! -x "$SLAPD" ] || [ ! -x "$SLAPADD" ] || ! command -v ldapsearch >/dev/null 2>&1; then
    echo "SKIP: slapd or ldap-utils not installed"; exit 77
fi
for bin in redis-server redis-cli; do
    command -v $bin >/dev/null 2>&1 || { echo "SKIP: $bin is not installed"; exit 77; }
done
[ -f "$B/plugins/ldap.la" ] || { echo "SKIP: the ldap plugin was not built (configure --with-ldap)"; exit 77; }

KG_LDAP_TMP=$T/ldap
export KG_LDAP_TMP
mkdir -p "$KG_LDAP_TMP"
trap 'slapd_stop a; redis_stop "$T/redis"; lib_cleanup' EXIT

# policy_head: a policy's lines up to its key store's (bearer keys)
policy_head() {
    printf 'version: 1\nkey_prefix: whizo\ncredential:\n  - {module: bearer, control: optional}\nkeystore:\n'
}
# timed URL MAX [curl args]: "CODE SECONDS" (000: no answer within MAX s).
timed() {
    tu=$1 tm=$2
    shift 2
    curl -s -o /dev/null -w '%{http_code} %{time_total}' --max-time "$tm" "$@" "$tu"
}
# lt A B: A < B (decimal seconds)
lt() { awk -v a="$1" -v b="$2" 'BEGIN { exit !(a < b) }'; }
# since T0: the seconds from T0 (date +%s.%N) to now
since() { awk -v a="$1" -v b="$(date +%s.%N)" 'BEGIN { printf "%.2f", b - a }'; }
# unread PORT: the stopped server on PORT has a request it has not read
# (a connection's Recv-Q): the lookup or script reached it and waits.
unread() { ss -Htn "sport = :$1" | awk '$2 > 0 { f = 1 } END { exit !f }'; }
# reached PORT DESC: wait (5 s at most) until the request is at the
# stopped server, so that what follows happens while it waits there.
reached() {
    wait_for 100 unread "$1" || bad "$2 did not reach the stopped server: $(ss -Htn "sport = :$1")"
}

# nginx_conf WORKERS PORT: a server on PORT ("/" checked, /status
# public, a connection per client spread over the workers by reuseport).
nginx_conf() {
    { nginx_head "$1" '$pid $msec $request_time "$request" $status key=$keygate_key_id code=$keygate_code'
      cat <<NGX
    server {
        listen 127.0.0.1:$2 reuseport;
        keygate on;
        location / { proxy_pass http://127.0.0.1:$UPORT; }
        location = /status { keygate off; proxy_pass http://127.0.0.1:$UPORT; }
    }
}
NGX
    } >"$N/conf/nginx.conf"
}
# fresh_nginx: started with empty logs (each part reads its own).
fresh_nginx() {
    : >"$N/logs/access.log"
    : >"$N/logs/error.log"
    start_nginx
}

start_upstream 1
FPORT=$(free_port)
GW="http://127.0.0.1:$FPORT"

# ---- 1. LDAP store, slapd hung ---------------------------------------------
PA=$(free_port)
slapd_setup a "$PA" conf || { bad "slapd setup"; finish; }
slapd_start a || { bad "slapd did not start"; finish; }
LURI=$(cat "$KG_LDAP_TMP/a/uri")
printf 'readpw\n' >"$T/ro.pw"
printf 'writepw\n' >"$T/rw.pw"
slapd_policy "$T/rw.yaml" "$LURI" cn=keygate-rw,ou=services,dc=example,dc=com "$T/rw.pw" "writable: true"
# One search waits up to 8 s: slapd is resumed before that (at 3.5 s).
POLICY=$T/ldap.yaml
slapd_policy "$POLICY" "$LURI" cn=keygate,ou=services,dc=example,dc=com "$T/ro.pw" \
    "network_timeout: 2s" "search_timeout: 8s" "retry: 30s"
ldap_key() {
    "$KEYGATE" --config "$T/rw.yaml" --json key create --name "$1" --plan free 2>&1 | json_field key
}
KA=$(ldap_key cached)
KB=$(ldap_key uncached)
KC=$(ldap_key hangs-up)
[ -n "$KA" ] && [ -n "$KB" ] && [ -n "$KC" ] && ok "three keys in LDAP" || { bad "LDAP keys: '$KA' '$KB' '$KC'"; finish; }
KAID=$(key_id_of "$KA")
KBID=$(key_id_of "$KB")

nginx_conf 1 "$FPORT"
fresh_nginx
expect_status "key A, looked up in LDAP (cached from now on)" 200 -H "Authorization: Bearer $KA" "$GW/v1/a"
body_has "... the upstream got its key id" "x-keygate-key-id=$KAID "

slapd_pause a
t0=$(date +%s.%N)
timed "$GW/v1/b" 20 -H "Authorization: Bearer $KB" >"$T/b.out" &
BPID=$!
reached "$PA" "key B's lookup"
# key C's client gives up after 1 s, its lookup waiting too.
curl -s -o /dev/null --max-time 1 -H "Authorization: Bearer $KC" "$GW/v1/c" &
CPID=$!
ra=$(timed "$GW/v1/a" 3 -H "Authorization: Bearer $KA")
rs=$(timed "$GW/status" 3)
kill -0 "$BPID" 2>/dev/null && inflight=yes || inflight=no
echo "# slapd hung: key A (cached): $ra; /status: $rs; key B's lookup still waiting: $inflight"
[ "${ra%% *}" = 200 ] && lt "${ra#* }" 1 \
    && ok "slapd hung: the cached key A answered 200 in ${ra#* } s (< 1 s) while B's lookup waits" \
    || bad "slapd hung: the cached key A: $ra (code, s; want 200 within 1 s): the worker waits for B's lookup"
[ "${rs%% *}" = 200 ] && lt "${rs#* }" 1 \
    && ok "slapd hung: the keygate off location answered in ${rs#* } s (< 1 s)" \
    || bad "slapd hung: the keygate off location: $rs (code, s; want 200 within 1 s)"
[ $inflight = yes ] && ok "... while key B's request was still waiting on the hung slapd" \
    || bad "key B's request ended before A's was answered: $(cat "$T/b.out")"
# B's lookup waits on the hung server until it is resumed at 3.5 s.
while lt "$(since "$t0")" 3.5; do sleep 0.1; done
kill -0 "$BPID" 2>/dev/null && ok "key B's request still waits after $(since "$t0") s" \
    || bad "key B's request ended within 3.5 s of a hung slapd: $(cat "$T/b.out")"
slapd_resume a
wait "$BPID"
rb=$(cat "$T/b.out")
echo "# key B, slapd resumed after 3.5 s: $rb"
[ "${rb%% *}" = 200 ] && lt 3 "${rb#* }" && lt "${rb#* }" 8 \
    && ok "slapd resumed: key B's request ends 200 after ${rb#* } s (3.5 s hung, search_timeout 8 s)" \
    || bad "key B after slapd resumed: $rb (code, s; want 200 after 3.5 to 8 s)"
b_logged() { grep -q "\"GET /v1/b HTTP/1.1\" 200 key=$KBID " "$N/logs/access.log"; }
wait_for 100 b_logged && ok "access log: key B's request with its \$status 200" \
    || bad "access log for key B: $(grep /v1/b "$N/logs/access.log")"
grep -q "^/v1/b key=$KBID\$" "$T/upstream.seen" && ok "key B's request reached the upstream with its key id" \
    || bad "the upstream saw: $(grep /v1/b "$T/upstream.seen")"
# The hung-up client's request ended when its lookup did (499: nginx
# noticed the closed connection), the worker unharmed (stop_nginx: no
# alert, no worker that exited on a signal).
wait "$CPID"
wait_for 100 grep -q '"GET /v1/c HTTP/1.1" 499 ' "$N/logs/access.log" \
    && ok "the client that hung up while its lookup waited: logged 499" \
    || bad "access log for the client that hung up: $(grep /v1/c "$N/logs/access.log")"
expect_status "key B, now cached" 200 -H "Authorization: Bearer $KB" "$GW/v1/b2"
stop_nginx "LDAP"

# ---- 1b. the pool's queue full: 503, never a wait on the event loop --------
# One thread and a queue of one: with slapd hung, key D's lookup holds the
# thread, key E's waits in the queue, and key F finds the queue full: it
# is answered 503 auth_unavailable at once (nginx logs the overflow);
# D and E end 200 once slapd answers.
KD=$(ldap_key queued-1)
KE=$(ldap_key queued-2)
KF=$(ldap_key overflow)
{ echo "thread_pool small threads=1 max_queue=1;"
  sed "s#^\( *keygate_policy .*\)\$#\1\n    keygate_thread_pool small;#" "$N/conf/nginx.conf"; } >"$N/conf/small.conf"
grep -q "keygate_thread_pool small;" "$N/conf/small.conf" || bad "the test's configuration edit did not apply"
cp "$N/conf/nginx.conf" "$N/conf/one.conf"
cp "$N/conf/small.conf" "$N/conf/nginx.conf"
fresh_nginx
slapd_pause a
timed "$GW/v1/d" 20 -H "Authorization: Bearer $KD" >"$T/d.out" &
DPID=$!
reached "$PA" "key D's lookup"
timed "$GW/v1/e" 20 -H "Authorization: Bearer $KE" >"$T/e.out" &
EPID=$!
queued() { grep -q '"GET /v1/e ' "$N/logs/access.log" && return 1; kill -0 "$EPID" 2>/dev/null; }
sleep 0.5
queued || bad "key E's request ended before slapd was resumed: $(cat "$T/e.out")"
rf=$(curl -s -o "$T/f.body" -w '%{http_code} %{time_total}' --max-time 3 \
    -H "Authorization: Bearer $KF" "$GW/v1/f")
echo "# queue full: key F: $rf"
[ "${rf%% *}" = 503 ] && lt "${rf#* }" 1 \
    && ok "the pool's queue full: key F answered 503 in ${rf#* } s (< 1 s)" \
    || bad "the pool's queue full: key F: $rf (code, s; want 503 within 1 s)"
grep -q '"code":"auth_unavailable"' "$T/f.body" && grep -q 'no thread free' "$T/f.body" \
    && ok "... JSON auth_unavailable: $(cat "$T/f.body")" || bad "key F's body: $(cat "$T/f.body")"
grep -q 'thread pool "small" queue overflow' "$N/logs/error.log" \
    && ok "... nginx logged the overflow" || bad "error.log: $(cat "$N/logs/error.log")"
slapd_resume a
wait "$DPID" "$EPID"
[ "$(cut -d' ' -f1 "$T/d.out")" = 200 ] && [ "$(cut -d' ' -f1 "$T/e.out")" = 200 ] \
    && ok "slapd resumed: keys D (on the thread) and E (queued) end 200" \
    || bad "keys D and E after slapd resumed: $(cat "$T/d.out") / $(cat "$T/e.out")"
expect_status "key F, once the pool is free" 200 -H "Authorization: Bearer $KF" "$GW/v1/f2"
stop_nginx "LDAP, a full queue"

# ---- 1c. reloaded from a policy that never waits into the LDAP one ----------
# The worker before the reload had no pool (its policy never waited); the
# reload makes one (nginx's default) for the new policy: with slapd
# hung, a cached key and /status answer at once while a lookup waits.
LDAPPOL=$POLICY
POLICY=$T/file.yaml
{ policy_head
  cat <<YAML
  - {module: file, control: required, options: {path: $T/file-keys.yaml}}
plans:
  free: {}
YAML
} >"$POLICY"
FK=$("$KEYGATE" --config "$POLICY" key create --name file --plan free 2>/dev/null)
sed "s#keygate_policy .*;#keygate_policy $POLICY;#" "$N/conf/one.conf" >"$N/conf/nginx.conf"
fresh_nginx
expect_status "a policy that never waits (file store)" 200 -H "Authorization: Bearer $FK" "$GW/v1/file"
grep -q "thread pool" "$N/logs/error.log" && bad "a thread pool was made for a policy that never waits: $(cat "$N/logs/error.log")"
sed "s#keygate_policy .*;#keygate_policy $LDAPPOL;#" "$N/conf/one.conf" >"$N/conf/nginx.conf"
POLICY=$LDAPPOL
KG_=$(ldap_key after-reload)
# The old generation's workers (the file policy's) may still accept a
# connection or two until they exit: the test goes on once they have.
OLDW=$(pgrep -P "$NGINX_PID" | tr '\n' ' ')
[ -n "$OLDW" ] || bad "no worker of nginx $NGINX_PID found before the reload"
kill -HUP "$NGINX_PID"
old_gone() { for w in $OLDW; do kill -0 "$w" 2>/dev/null && return 1; done; return 0; }
wait_for 200 old_gone || bad "the workers before the reload ($OLDW) did not exit"
expect_status "nginx -s reload into the LDAP policy: key A" 200 -H "Authorization: Bearer $KA" "$GW/v1/a"
# every worker of the new generation has looked key A up (one worker)
slapd_pause a
timed "$GW/v1/g" 20 -H "Authorization: Bearer $KG_" >"$T/g.out" &
GPID=$!
reached "$PA" "the new key's lookup after the reload"
ra=$(timed "$GW/v1/a" 3 -H "Authorization: Bearer $KA")
rs=$(timed "$GW/status" 3)
echo "# reloaded, slapd hung: key A (cached): $ra; /status: $rs"
[ "${ra%% *}" = 200 ] && lt "${ra#* }" 1 && [ "${rs%% *}" = 200 ] && lt "${rs#* }" 1 \
    && ok "reloaded, slapd hung: the cached key and /status answered at once (${ra#* } s, ${rs#* } s)" \
    || bad "reloaded, slapd hung: key A $ra, /status $rs (want 200 within 1 s each)"
slapd_resume a
wait "$GPID"
[ "$(cut -d' ' -f1 "$T/g.out")" = 200 ] && ok "... and the waiting lookup ends 200" \
    || bad "the lookup after the reload: $(cat "$T/g.out")"
stop_nginx "LDAP after a reload"

# ---- 3. keygate_thread_pool naming an undefined pool -------------------------
# (the LDAP policy: one that may wait, which the pool is for)
sed "s#^\( *keygate_policy .*\)\$#\1\n    keygate_thread_pool nosuch;#" "$N/conf/nginx.conf" >"$N/conf/nosuch.conf"
grep -q "keygate_thread_pool nosuch;" "$N/conf/nosuch.conf" || bad "the test's configuration edit did not apply"
if "$NGINX" -t -p "$N" -c "$N/conf/nosuch.conf" >"$T/t.out" 2>&1; then
    bad "nginx -t accepts keygate_thread_pool nosuch without a thread_pool nosuch"
else
    echo "# nginx -t: $(grep emerg "$T/t.out")"
    TPLINE=$(grep -n "keygate_thread_pool nosuch;" "$N/conf/nosuch.conf" | cut -d: -f1)
    grep -q "unknown thread pool \"nosuch\" in .*nosuch.conf:$TPLINE\$" "$T/t.out" && ok "keygate_thread_pool nosuch: nginx -t fails naming the pool and its line ($TPLINE)" \
        || bad "nginx -t with keygate_thread_pool nosuch: $(cat "$T/t.out")"
fi
{ echo "thread_pool nosuch threads=2;"; cat "$N/conf/nosuch.conf"; } >"$N/conf/defined.conf"
"$NGINX" -t -p "$N" -c "$N/conf/defined.conf" >"$T/t.out" 2>&1 && ok "... and passes once thread_pool nosuch is defined" \
    || bad "nginx -t with thread_pool nosuch defined: $(cat "$T/t.out")"

# ---- 2. a Redis limit ----------------------------------------------------------
redis_start "$T/redis" || { bad "redis-server did not start"; finish; }
RPORT=$REDIS_PORT
POLICY=$T/redis.yaml
{ policy_head
  cat <<YAML
  - module: sql
    control: required
    cache: {ttl: 60s, negative_ttl: 1s}
    options: {driver: sqlite, path: $T/keys.db}
plans:
  free:
    limit:
      - module: fixed_window
        control: requisite
        options:
          name: hour
          count: 10
          window: 1h
          backend: redis
          redis: {endpoints: ["127.0.0.1:$RPORT"], command_timeout_ms: 3000}
YAML
} >"$POLICY"
FREE=$(new_key free free)
STORM=$(new_key storm free)
HUNG=$(new_key hung free)
[ -n "$FREE" ] && [ -n "$STORM" ] && [ -n "$HUNG" ] && ok "keys in SQLite" || bad "SQLite keys"
STORMID=$(key_id_of "$STORM")

# One worker: Redis hung.
nginx_conf 1 "$FPORT"
fresh_nginx
expect_status "the hung key's first request (Redis answers)" 200 -H "Authorization: Bearer $HUNG" "$GW/v1/h"
RPID=$(cat "$T/redis/redis.pid")
kill -STOP "$RPID"
t0=$(date +%s.%N)
timed "$GW/v1/h" 20 -H "Authorization: Bearer $HUNG" >"$T/h.out" &
HPID=$!
reached "$RPORT" "the limit's script"
rs=$(timed "$GW/status" 3)
kill -0 "$HPID" 2>/dev/null && inflight=yes || inflight=no
echo "# Redis hung: /status: $rs; the limited request still waiting: $inflight"
[ "${rs%% *}" = 200 ] && lt "${rs#* }" 1 && [ $inflight = yes ] \
    && ok "Redis hung: the keygate off location answered in ${rs#* } s (< 1 s) while a limited request waits" \
    || bad "Redis hung: the keygate off location: $rs (code, s; want 200 within 1 s), the limited request waiting: $inflight"
wait "$HPID"
kill -CONT "$RPID"
rh=$(cat "$T/h.out")
echo "# the limited request, Redis hung: $rh"
[ "${rh%% *}" = 503 ] && lt 2.5 "${rh#* }" \
    && ok "... the limited request: 503 after ${rh#* } s (command_timeout_ms 3000)" \
    || bad "the limited request with Redis hung: $rh (code, s; want 503 after command_timeout_ms, 3 s)"
wait_for 100 grep -q "\"GET /v1/h HTTP/1.1\" 503 key=.* code=auth_unavailable" "$N/logs/access.log" \
    && ok "access log: 503 auth_unavailable" || bad "access log, Redis hung: $(grep /v1/h "$N/logs/access.log")"
stop_nginx "Redis hung"

# Two workers: ten 200s then 429, and 16 clients at once.
nginx_conf 2 "$FPORT"
fresh_nginx
i=1
while [ $i -le 10 ]; do
    req -H "Authorization: Bearer $FREE" "$GW/v1/free"
    [ "$CODE" = 200 ] || bad "free request $i: $CODE $(cat "$T/b")"
    i=$((i + 1))
done
has_header "the 10th: X-RateLimit-Remaining 0" "X-RateLimit-Remaining: 0$"
expect_status "the Free key's 11th in the hour" 429 -H "Authorization: Bearer $FREE" "$GW/v1/free"
has_header "... with Retry-After" "Retry-After: [1-9][0-9]*$"
body_has "... JSON rate_limited" '"code":"rate_limited"'
# 48 requests, 16 at a time, a connection each.
seq 48 | xargs -P 16 -I{} curl -s -o /dev/null -w '%{http_code}\n' --max-time 20 \
    -H "Authorization: Bearer $STORM" "$GW/v1/storm" >"$T/codes"
admitted=$(grep -c '^200$' "$T/codes")
denied=$(grep -c '^429$' "$T/codes")
[ "$admitted" -eq 10 ] && [ "$denied" -eq 38 ] \
    && ok "2 workers, 16 clients, 48 requests: exactly 10 admitted, 38 refused 429" \
    || bad "2 workers, 16 clients: $admitted admitted, $denied denied: $(sort "$T/codes" | uniq -c | tr '\n' ' ')"
seen=$(grep -c "^/v1/storm key=$STORMID\$" "$T/upstream.seen")
[ "$seen" -eq 10 ] && ok "the upstream saw exactly 10" || bad "the upstream saw $seen"
workers=$(grep "key=$STORMID" "$N/logs/access.log" | awk '{print $1}' | sort -u | wc -l)
[ "$workers" -eq 2 ] && ok "both workers answered the storm" || bad "workers that answered: $workers"
# The count is Redis's (docs/redis.md: kg:{ACCOUNT}:LIMIT:..., its field c), the
# refused requests not in it.
STORMACC=$("$KEYGATE" --config "$POLICY" key list | awk -v k="$STORMID" '$1 == k { print $7 }')
rkey=$(redis-cli -p "$RPORT" --scan --pattern "kg:{$STORMACC}:hour:*" | head -1)
rval=$(redis-cli -p "$RPORT" hget "$rkey" c 2>&1)
[ -n "$STORMACC" ] && [ "$rval" = 10 ] && ok "Redis holds the storm key's count: $rkey = 10" \
    || bad "Redis, the storm key's account '$STORMACC': '$rkey' = '$rval' (want 10): $(redis-cli -p "$RPORT" --scan | tr '\n' ' ')"
stop_nginx "Redis"
finish
