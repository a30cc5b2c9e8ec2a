#!/bin/sh
# The limiter state file (limits: {state_file:}, docs/limits-state.md)
# through keygated and ngx_http_keygate_module, with the shipped policy
# (conf/keygate.yaml) plus a limits: section: keygated restarted (SIGTERM,
# and SIGKILL) keeps a Free key at 10 of 10; nginx with 2 workers
# (reuseport: the kernel spreads the connections) and 16 concurrent
# clients against a Free key's 10/hour and 1 in flight admits exactly 1
# at once and exactly 10 in all; counts survive `nginx -s reload` and a
# full restart; keygated and nginx on one file count together.
. "${KEYGATE_SRCDIR:-.}/tests/keygated/lib.sh"

SO=$(cd "$B" && pwd)/nginx-build/objs/ngx_http_keygate_module.so
[ -f "$SO" ] || { echo "the nginx module was not built (configure --with-nginx-module)"; exit 77; }
NGINX=$(command -v nginx || echo /usr/sbin/nginx)
[ -x "$NGINX" ] || { echo "nginx is not installed (scripts/deps.sh --test)"; exit 77; }
command -v python3 >/dev/null || { echo "python3 is needed"; exit 1; }
LD_LIBRARY_PATH=$B/.libs${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
export LD_LIBRARY_PATH

POLICY=$T/keygate.yaml
STATE=$T/limits.state
{ cat "$S/conf/keygate.yaml"; printf 'limits: {state_file: %s, size: 8m}\n' "$STATE"; } >"$POLICY"
FREE=$(new_key free free)
SHARED=$(new_key shared free)
STORM=$(new_key storm free)
KEPT=$(new_key kept free)
[ -n "$FREE" ] && [ -n "$KEPT" ] && ok "keys created" || bad "keys"

# ---- keygated restarted ---------------------------------------------------
start_keygated
n=0
while [ $n -lt 10 ]; do
    req -H "Authorization: Bearer $FREE" "$KGD/check?lease=none"
    [ "$CODE" = 200 ] || bad "keygated, free request $((n + 1)): $CODE"
    n=$((n + 1))
done
expect_status "keygated: the 11th in the hour" 429 -H "Authorization: Bearer $FREE" "$KGD/check?lease=none"
[ -s "$STATE" ] && ok "the state file exists" || bad "no state file at $STATE"
stop_keygated
start_keygated
expect_status "keygated restarted: still 10 of 10" 429 -H "Authorization: Bearer $FREE" "$KGD/check?lease=none"
has_header "... X-RateLimit-Remaining 0" "X-RateLimit-Remaining: 0"
# Killed, it never closed the file: this boot's page cache is the truth.
kill -KILL "$KGD_PID"; wait "$KGD_PID" 2>/dev/null; KGD_PID=
start_keygated
expect_status "keygated killed and started again: still 10 of 10" 429 -H "Authorization: Bearer $FREE" "$KGD/check?lease=none"
wait_log "every shard checked and kept" && ok "keygated says it checked the file left open" \
    || bad "keygated's log: $(cat "$T/keygated.err")"
# keygated's half of the shared key: 5 of its 10.
n=0
while [ $n -lt 5 ]; do
    req -H "Authorization: Bearer $SHARED" "$KGD/check?lease=none"
    [ "$CODE" = 200 ] || bad "keygated, shared request $((n + 1)): $CODE"
    n=$((n + 1))
done
has_header "keygated: 5 of the shared key's 10" "X-RateLimit-Remaining: 5$"

# ---- nginx: 2 workers on the same file ------------------------------------
UPORT=$(free_port)
bg_start python3 "$S/tests/nginx/upstream.py" "$UPORT" 1 "$T/upstream.seen" 2>"$T/upstream.err"
wait_http "http://127.0.0.1:$UPORT/" any "$BG_PID" || { bad "upstream did not start: $(cat "$T/upstream.err")"; finish; }
N=$T/nginx
mkdir -p "$N/conf" "$N/logs" "$N/tmp"
chmod 755 "$T" "$N" "$N/logs" "$N/tmp"
USER_LINE=
[ "$(id -u)" -eq 0 ] && USER_LINE="user root;"
FPORT=$(free_port)
cat >"$N/conf/nginx.conf" <<NGX
load_module $SO;
$USER_LINE
worker_processes 2;
pid $N/nginx.pid;
error_log $N/logs/error.log notice;
env KEYGATE_STATE_DIR;
env KEYGATE_PLUGIN_PATH;
events { worker_connections 256; }
http {
    keygate_policy $POLICY;
    log_format kg '\$pid \$remote_addr "\$request" \$status key=\$keygate_key_id';
    access_log $N/logs/access.log kg;
    client_body_temp_path $N/tmp/body;
    proxy_temp_path $N/tmp/proxy;
    fastcgi_temp_path $N/tmp/fastcgi;
    uwsgi_temp_path $N/tmp/uwsgi;
    scgi_temp_path $N/tmp/scgi;
    server {
        listen 127.0.0.1:$FPORT reuseport;
        keygate on;
        location / { proxy_pass http://127.0.0.1:$UPORT; }
        location = /status { keygate off; proxy_pass http://127.0.0.1:$UPORT; }
    }
}
NGX
start_nginx() {
    bg_start "$NGINX" -p "$N" -c "$N/conf/nginx.conf" -g 'daemon off;' 2>>"$N/logs/stderr"
    NGINX_PID=$BG_PID
    wait_http "http://127.0.0.1:$FPORT/status" 200 "$NGINX_PID" || { bad "nginx did not start: $(cat "$N/logs/stderr" "$N/logs/error.log")"; finish; }
}
start_nginx
GW="http://127.0.0.1:$FPORT"

# keygated's 5 and nginx's 5 of the shared key are its 10.
n=0
while [ $n -lt 5 ]; do
    req -H "Authorization: Bearer $SHARED" "$GW/v1/x"
    [ "$CODE" = 200 ] || bad "nginx, shared request $((n + 1)): $CODE"
    n=$((n + 1))
done
has_header "nginx counts on from keygated's 5" "X-RateLimit-Remaining: 0$"
expect_status "nginx: the shared key's 11th" 429 -H "Authorization: Bearer $SHARED" "$GW/v1/x"
expect_status "keygated: the shared key's 11th" 429 -H "Authorization: Bearer $SHARED" "$KGD/check?lease=none"
expect_status "nginx: keygated's spent key" 429 -H "Authorization: Bearer $FREE" "$GW/v1/x"

# 16 clients at once, in rounds: each round admits one (the Free plan's
# one request in flight: /v1/slow holds it a second), until the hour's
# 10 are spent.  Per-worker state would let each worker admit its own.
STORMID=$(key_id_of "$STORM")
round=0
while [ $round -lt 14 ]; do
    c=0
    pids=
    while [ $c -lt 16 ]; do
        curl -s -o /dev/null -w '%{http_code}\n' --max-time 20 \
            -H "Authorization: Bearer $STORM" "$GW/v1/slow" >"$T/r$round.$c" &
        pids="$pids $!"
        c=$((c + 1))
    done
    wait $pids
    [ "$(cat "$T"/r$round.* | grep -c '^200$')" -le 1 ] || bad "round $round: two in flight at once"
    round=$((round + 1))
done
cat "$T"/r[0-9]*.* >"$T/codes"
admitted=$(grep -c '^200$' "$T/codes")
denied=$(grep -c '^429$' "$T/codes")
[ "$admitted" -eq 10 ] && [ "$denied" -eq $((14 * 16 - 10)) ] \
    && ok "16 clients x 14 rounds: exactly 10 admitted, the rest 429" \
    || bad "16 clients x 14 rounds: $admitted admitted, $denied denied, $(sort "$T/codes" | uniq -c | tr '\n' ' ')"
seen=$(grep -c "^/v1/slow key=$STORMID" "$T/upstream.seen")
[ "$seen" -eq 10 ] && ok "the upstream saw exactly 10" || bad "the upstream saw $seen"
workers=$(grep "key=$STORMID" "$N/logs/access.log" | awk '{print $1}' | sort -u | wc -l)
[ "$workers" -eq 2 ] && ok "both workers answered the storm" || bad "workers that answered: $workers"
expect_status "after the storm: spent" 429 -H "Authorization: Bearer $STORM" "$GW/v1/x"

# A key part-way through its hour, across a reload and a restart.
n=0
while [ $n -lt 4 ]; do
    req -H "Authorization: Bearer $KEPT" "$GW/v1/x"
    n=$((n + 1))
done
has_header "4 of 10 used" "X-RateLimit-Remaining: 6$"
"$NGINX" -p "$N" -c "$N/conf/nginx.conf" -s reload 2>>"$N/logs/stderr"
reloaded() { [ "$(grep -c 'start worker process' "$N/logs/error.log")" -ge 4 ]; }
wait_for 200 reloaded || bad "no new workers after the reload: $(tail -5 "$N/logs/error.log")"
expect_status "after nginx -s reload: counted on" 200 -H "Authorization: Bearer $KEPT" "$GW/v1/x"
has_header "... 5 of 10 used" "X-RateLimit-Remaining: 5$"
expect_status "after nginx -s reload: the storm key still spent" 429 -H "Authorization: Bearer $STORM" "$GW/v1/x"
bg_stop "$NGINX_PID"
start_nginx
expect_status "after a full restart: counted on" 200 -H "Authorization: Bearer $KEPT" "$GW/v1/x"
has_header "... 6 of 10 used" "X-RateLimit-Remaining: 4$"
expect_status "after a full restart: the storm key still spent" 429 -H "Authorization: Bearer $STORM" "$GW/v1/x"
expect_status "keygated sees nginx's counts" 200 -H "Authorization: Bearer $KEPT" "$KGD/check?lease=none"
has_header "... 7 of 10 used" "X-RateLimit-Remaining: 3$"
bg_stop "$NGINX_PID"
grep -q '\[alert\]\|exited on signal' "$N/logs/error.log" && bad "nginx alerts: $(grep 'alert\|signal' "$N/logs/error.log")" \
    || ok "no nginx alerts"
stop_keygated
finish
