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

. "$S/tests/nginx/lib.sh"

# spend N KEY URL WHAT: N requests with the key, each to be admitted.
spend() {
    i=0
    while [ $i -lt "$1" ]; do
        req -H "Authorization: Bearer $2" "$3"
        [ "$CODE" = 200 ] || bad "$4, request $((i + 1)): $CODE"
        i=$((i + 1))
    done
}

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
spend 10 "$FREE" "$KGD/check?lease=none" "keygated, free"
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
spend 5 "$SHARED" "$KGD/check?lease=none" "keygated, shared"
has_header "keygated: 5 of the shared key's 10" "X-RateLimit-Remaining: 5$"

# ---- nginx: 2 workers on the same file ------------------------------------
start_upstream 1
FPORT=$(free_port)
{ nginx_head 2 '$pid $msec $request_time "$request" $status key=$keygate_key_id'
  cat <<NGX
    server {
        listen 127.0.0.1:$FPORT reuseport;
        keygate on;
        location / { proxy_pass http://127.0.0.1:$UPORT; }
        location = /status { keygate off; proxy_pass http://127.0.0.1:$UPORT; }
    }
}
NGX
} >"$N/conf/nginx.conf"
start_nginx
GW="http://127.0.0.1:$FPORT"

# keygated's 5 and nginx's 5 of the shared key are its 10.
spend 5 "$SHARED" "$GW/v1/x" "nginx, shared"
has_header "nginx counts on from keygated's 5" "X-RateLimit-Remaining: 0$"
expect_status "nginx: the shared key's 11th" 429 -H "Authorization: Bearer $SHARED" "$GW/v1/x"
expect_status "keygated: the shared key's 11th" 429 -H "Authorization: Bearer $SHARED" "$KGD/check?lease=none"
expect_status "nginx: keygated's spent key" 429 -H "Authorization: Bearer $FREE" "$GW/v1/x"

# 16 clients at once, in rounds: each round admits one or two (the Free
# plan's one request in flight: /v1/slow holds it a second; a client
# that starts late may come after it), until the hour's 10 are spent.
# Per-worker state would let each worker admit its own.
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
# Never two in flight: the admitted requests' spans (from nginx's log:
# ended at $msec after $request_time) do not overlap (5 ms for the log
# phase, which frees the lease before $msec is taken).
overlaps=$(grep " 200 key=$STORMID\$" "$N/logs/access.log" | awk '{ printf "%.3f %.3f\n", $2 - $3, $2 }' |
    sort -n | awk 'NR > 1 && $1 < end - 0.005 { n++ } { end = $2 } END { print n + 0 }')
[ "$overlaps" -eq 0 ] && ok "never two of the storm in flight at once" \
    || bad "$overlaps overlapping admitted requests: $(grep " 200 key=$STORMID" "$N/logs/access.log")"
workers=$(grep "key=$STORMID" "$N/logs/access.log" | awk '{print $1}' | sort -u | wc -l)
[ "$workers" -eq 2 ] && ok "both workers answered the storm" || bad "workers that answered: $workers"
expect_status "after the storm: spent" 429 -H "Authorization: Bearer $STORM" "$GW/v1/x"

# A key part-way through its hour, across a reload and a restart.
spend 4 "$KEPT" "$GW/v1/x" "nginx, kept"
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
stop_nginx "nginx on the state file"
stop_keygated
finish
