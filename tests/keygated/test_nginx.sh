#!/bin/sh
# Real nginx (Debian's) with the shipped snippets (conf/nginx/) in front of
# a small upstream (an nginx server that echoes the X-Keygate-* headers it
# receives), keygated with the shipped policy (conf/keygate.yaml) behind
# auth_request.  Allowed requests reach the upstream with the key id;
# missing, revoked, expired, wrong-IP and wrong-permission keys get the
# right status and JSON; the Free plan's 11th request in the hour gets 429
# with Retry-After through nginx; the rate-limit headers reach the client
# on proxied answers too (200 and the upstream's own 404), once each;
# post_action releases each lease; with keygated gone nginx answers 503
# auth_unavailable, not 500.
. "${KEYGATE_SRCDIR:-.}/tests/keygated/lib.sh"

NGINX=$(command -v nginx || echo /usr/sbin/nginx)
[ -x "$NGINX" ] || { echo "nginx is not installed (scripts/deps.sh --test)"; exit 77; }

POLICY=$S/conf/keygate.yaml
gateway_keys

# Only nginx (on 127.0.0.1) may speak for clients; curl comes from
# 127.0.0.2 / 127.0.0.3 so that a client is never a trusted proxy.
start_keygated --trusted-proxy 127.0.0.1/32

N=$T/nginx
mkdir -p "$N/conf" "$N/logs" "$N/tmp"
chmod 755 "$T" "$N" "$N/logs" "$N/tmp"
sed "s/127\.0\.0\.1:8080/127.0.0.1:$KGD_PORT/" "$S/conf/nginx/keygated-upstream.conf" >"$N/conf/keygated-upstream.conf"
FPORT=$(free_port)
UPORT=$(free_port)
cat >"$N/conf/nginx.conf" <<NGX
worker_processes 1;
pid $N/nginx.pid;
error_log $N/logs/error.log notice;
events { worker_connections 256; }
http {
    access_log $N/logs/access.log;
    client_body_temp_path $N/tmp/body;
    proxy_temp_path $N/tmp/proxy;
    fastcgi_temp_path $N/tmp/fastcgi;
    uwsgi_temp_path $N/tmp/uwsgi;
    scgi_temp_path $N/tmp/scgi;
    include $N/conf/keygated-upstream.conf;
    server {
        listen 127.0.0.1:$UPORT;
        location /v1/missing {
            default_type text/plain;
            return 404 "upstream: no such thing\n";
        }
        location / {
            default_type text/plain;
            return 200 "upstream key=\$http_x_keygate_key_id plan=\$http_x_keygate_plan priority=\$http_x_keygate_priority lease=\$http_x_keygate_lease\n";
        }
    }
    server {
        listen 127.0.0.1:$FPORT;
        include $S/conf/nginx/keygate-locations.conf;
        location / {
            include $S/conf/nginx/keygate-protect.conf;
            proxy_pass http://127.0.0.1:$UPORT;
        }
    }
}
NGX
"$NGINX" -t -p "$N" -c "$N/conf/nginx.conf" >"$N/t.out" 2>&1 && ok "nginx accepts the shipped snippets" \
    || { bad "nginx -t: $(cat "$N/t.out")"; finish; }
bg_start "$NGINX" -p "$N" -c "$N/conf/nginx.conf" -g 'daemon off;' 2>>"$N/logs/stderr"
NGINX_PID=$BG_PID
GW="http://127.0.0.1:$FPORT"
wait_http "$GW/" any "$NGINX_PID" || { bad "nginx did not start: $(cat "$N/logs/stderr")"; finish; }
C2="--interface 127.0.0.2"
C3="--interface 127.0.0.3"

# released N: wait until keygated has seen N lease releases (post_action).
released() {
    i=0
    while [ $i -lt 100 ]; do
        got=$(curl -s "$KGD/metrics" | sed -n 's/^keygated_lease_releases_total{result="released"} //p')
        [ "${got:-0}" -ge "$1" ] && return 0
        sleep 0.02
        i=$((i + 1))
    done
    return 1
}

expect_status "no key" 401 $C2 "$GW/v1/scrape"
body_has "no key: JSON through nginx" '{"error":{"code":"unauthorized"'
has_header "no key: WWW-Authenticate" 'WWW-Authenticate: Bearer realm="whizo API"'
has_header "no key: JSON type" "Content-Type: application/json"
nwww=$(tr -d '\r' <"$T/h" | grep -ci '^WWW-Authenticate:')
[ "$nwww" -eq 1 ] && ok "one WWW-Authenticate" || bad "$nwww WWW-Authenticate headers: $(tr -d '\r' <"$T/h" | tr '\n' '|')"

expect_status "free key allowed" 200 $C2 -H "Authorization: Bearer $FREE" "$GW/v1/scrape?url=x"
FREEID=$(key_id_of "$FREE")
body_has "upstream got the key id" "upstream key=$FREEID plan=free priority=0 lease=."
# The rate-limit headers keygated computed reach the client on the
# proxied 200 (auth_request_set + add_header ... always), each once.
has_header "client sees X-RateLimit-Limit" "X-RateLimit-Limit: 10$"
has_header "client sees X-RateLimit-Remaining" "X-RateLimit-Remaining: 9$"
has_header "client sees X-RateLimit-Reset" "X-RateLimit-Reset: [0-9]\{10\}$"
has_header "client sees RateLimit" 'RateLimit: "hour";r=9;t=[0-9]*, "day";r=99;'
has_header "client sees RateLimit-Policy" 'RateLimit-Policy: "hour";q=10;w=3600'
once_each() {
    for h in X-RateLimit-Limit X-RateLimit-Remaining X-RateLimit-Reset RateLimit RateLimit-Policy; do
        [ "$(tr -d '\r' <"$T/h" | grep -ci "^$h:")" -eq 1 ] || return 1
    done
}
once_each && ok "each rate-limit header once on the 200" \
    || bad "rate-limit headers not once each: $(tr -d '\r' <"$T/h" | tr '\n' '|')"
released 1 && ok "post_action released the lease" || bad "lease not released"
expect_status "X-API-Key works too" 200 $C2 -H "X-API-Key: $FREE" "$GW/"
released 2 || bad "lease 2 not released"
# A client cannot pose as a key by sending the upstream's headers.
expect_status "forged X-Keygate-Key-Id is replaced" 200 $C2 -H "Authorization: Bearer $FREE" \
    -H "X-Keygate-Key-Id: k_0000000000000000" -H "X-Keygate-Plan: enterprise" "$GW/"
body_has "upstream sees the real id" "upstream key=$FREEID plan=free"
released 3 || bad "lease 3 not released"

expect_status "revoked key" 401 $C2 -H "Authorization: Bearer $REV" "$GW/"
body_has "revoked: JSON" '"code":"key_revoked"'
expect_status "expired key" 401 $C2 -H "Authorization: Bearer $EXP" "$GW/"
body_has "expired: JSON" '"code":"key_expired"'
expect_status "invalid key" 401 $C2 -H "Authorization: Bearer whizo_nope" "$GW/"
expect_status "two keys" 400 $C2 -H "Authorization: Bearer $FREE" -H "X-API-Key: $PRO" "$GW/"
body_has "two keys: JSON" '"code":"invalid_request"'

expect_status "key used from its allowed IP" 200 $C2 -H "Authorization: Bearer $IPK" "$GW/"
expect_status "key used from another IP" 403 $C3 -H "Authorization: Bearer $IPK" "$GW/"
body_has "wrong IP: JSON" '"code":"ip_not_allowed"'
expect_status "forged X-Forwarded-For does not help" 403 $C3 -H "X-Forwarded-For: 127.0.0.2" \
    -H "Authorization: Bearer $IPK" "$GW/"

expect_status "read-only key reads" 200 $C2 -H "Authorization: Bearer $RO" "$GW/v1/jobs/17"
body_has "enterprise priority upstream" "plan=enterprise priority=10"
expect_status "read-only key writes" 403 $C2 -X POST -H "Authorization: Bearer $RO" "$GW/v1/jobs"
body_has "wrong permission: JSON" '"code":"insufficient_permissions"'
expect_status "read-only key, unmapped route" 403 $C2 -H "Authorization: Bearer $RO" "$GW/admin"

# The Free plan: 10 per hour.  Three were used above.
released 3
n=4
while [ $n -le 10 ]; do
    req $C2 -H "Authorization: Bearer $FREE" "$GW/v1/scrape"
    [ "$CODE" = 200 ] || bad "free request $n: $CODE $(cat "$T/b")"
    released $n || bad "lease $n not released"
    n=$((n + 1))
done
ok "free requests 4..10 allowed"
expect_status "11th free request in the hour" 429 $C2 -H "Authorization: Bearer $FREE" "$GW/v1/scrape"
body_has "11th: JSON" '{"error":{"code":"rate_limited"'
has_header "11th: Retry-After" "Retry-After: [1-9][0-9]*$"
has_header "11th: X-RateLimit-Remaining 0" "X-RateLimit-Remaining: 0"
has_header "11th: RateLimit" 'RateLimit: "hour";r=0'
grep -q "upstream" "$T/b" && bad "429 reached the upstream" || ok "429 did not reach the upstream"

# The upstream's own error answer (proxied, not nginx's): still told.
expect_status "upstream 404 proxied" 404 $C2 -H "Authorization: Bearer $PRO" "$GW/v1/missing"
body_has "404 is the upstream's" "upstream: no such thing"
has_header "404: X-RateLimit-Limit" "X-RateLimit-Limit: [0-9][0-9]*$"
has_header "404: RateLimit-Policy" 'RateLimit-Policy: "hour";q='
once_each && ok "each rate-limit header once on the 404" \
    || bad "rate-limit headers not once each: $(tr -d '\r' <"$T/h" | tr '\n' '|')"

# keygated gone: fail closed with 503, not 500.
stop_keygated
expect_status "keygated down" 503 $C2 -H "Authorization: Bearer $PRO" "$GW/"
body_has "keygated down: JSON" '"code":"auth_unavailable"'

bg_stop "$NGINX_PID"
grep -q '\[alert\]\|\[emerg\]' "$N/logs/error.log" && bad "nginx alerts: $(grep alert "$N/logs/error.log")" || ok "no nginx alerts"
finish
