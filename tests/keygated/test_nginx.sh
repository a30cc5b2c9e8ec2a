#!/bin/sh
# Real nginx (Debian's) running the shipped example site and snippets
# (conf/nginx/) in front of a small upstream (an nginx server that echoes
# the X-Keygate-* headers it receives), keygated with the shipped policy
# (conf/keygate.yaml) behind auth_request.  Allowed requests reach the
# upstream with the key id, and client-made X-Keygate-* headers never do
# (protected or public location); a client's own X-Forwarded-For does not
# pass an allowlist; the access log has the client's status, not
# post_action's 204; clients that hang up while keygated decides leave
# no lease held;
# missing, revoked, expired, wrong-IP and wrong-permission keys get the
# right status and JSON; the Free plan's 11th request in the hour gets 429
# with Retry-After through nginx; the rate-limit headers reach the client
# on proxied answers too (200 and the upstream's own 404), once each;
# post_action releases each lease; with keygated gone nginx answers 503
# auth_unavailable, not 500.
. "${KEYGATE_SRCDIR:-.}/tests/keygated/lib.sh"

NGINX=$(command -v nginx || echo /usr/sbin/nginx)
[ -x "$NGINX" ] || { echo "nginx is not installed (scripts/deps.sh --test)"; exit 77; }

command -v python3 >/dev/null || { echo "python3 is needed"; exit 1; }

POLICY=$S/conf/keygate.yaml
gateway_keys
XFFK=$(new_key xff pro --allow-ip 203.0.113.0/24)
ABORT=$(new_key abort pro)

# Only nginx (on 127.0.0.1) may speak for clients; curl comes from
# 127.0.0.2 / 127.0.0.3 so that a client is never a trusted proxy.
start_keygated --trusted-proxy 127.0.0.1/32

# nginx_site DIR FPORT KPORT [upstream]: an nginx prefix in DIR running
# the shipped example (conf/nginx/example.conf, its paths and ports made
# the test's) on FPORT, with keygated at KPORT, in front of the upstream
# on $UPORT, which it also runs when told to: an nginx server that
# answers with the X-Keygate-* headers it received, and with 500 for
# /v1/fail.  Sets NGINX_PID.
nginx_site() {
    d=$1
    up=
    [ "${4:-}" = upstream ] && up="listen 127.0.0.1:$UPORT;" || up="listen unix:$d/upstream.sock;"
    mkdir -p "$d/conf" "$d/logs" "$d/tmp"
    chmod 755 "$T" "$d" "$d/logs" "$d/tmp"
    sed "s/127\.0\.0\.1:8080/127.0.0.1:$3/" "$S/conf/nginx/keygated-upstream.conf" >"$d/conf/keygated-upstream.conf"
    sed -e "s#/etc/nginx/keygate/keygated-upstream\.conf#$d/conf/keygated-upstream.conf#" \
        -e "s#/etc/nginx/keygate/#$S/conf/nginx/#g" -e "s#/var/log/nginx/#$d/logs/#" \
        -e "s#listen 80;#listen 127.0.0.1:$2;#" -e "s#127\.0\.0\.1:9000#127.0.0.1:$UPORT#g" \
        "$S/conf/nginx/example.conf" >"$d/conf/example.conf"
    cat >"$d/conf/nginx.conf" <<NGX
worker_processes 1;
pid $d/nginx.pid;
error_log $d/logs/error.log notice;
events { worker_connections 256; }
http {
    access_log $d/logs/access.log;
    client_body_temp_path $d/tmp/body;
    proxy_temp_path $d/tmp/proxy;
    fastcgi_temp_path $d/tmp/fastcgi;
    uwsgi_temp_path $d/tmp/uwsgi;
    scgi_temp_path $d/tmp/scgi;
    server {
        $up
        location /v1/missing {
            default_type text/plain;
            return 404 "upstream: no such thing\n";
        }
        location /v1/fail {
            default_type text/plain;
            return 500 "upstream: failed\n";
        }
        location / {
            default_type text/plain;
            return 200 "upstream key=\$http_x_keygate_key_id plan=\$http_x_keygate_plan priority=\$http_x_keygate_priority lease=\$http_x_keygate_lease account=\$http_x_keygate_account\n";
        }
    }
    include $d/conf/example.conf;
}
NGX
    if ! "$NGINX" -t -p "$d" -c "$d/conf/nginx.conf" >"$d/t.out" 2>&1; then
        bad "nginx -t: $(cat "$d/t.out")"
        finish
    fi
    bg_start "$NGINX" -p "$d" -c "$d/conf/nginx.conf" -g 'daemon off;' 2>>"$d/logs/stderr"
    NGINX_PID=$BG_PID
    wait_http "http://127.0.0.1:$2/" any "$NGINX_PID" || { bad "nginx did not start: $(cat "$d/logs/stderr")"; finish; }
}

N=$T/nginx
FPORT=$(free_port)
UPORT=$(free_port)
nginx_site "$N" "$FPORT" "$KGD_PORT" upstream
ok "nginx runs the shipped example and snippets"
GW="http://127.0.0.1:$FPORT"
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
rate_headers_once "each rate-limit header once on the 200"
released 1 && ok "post_action released the lease" || bad "lease not released"
expect_status "X-API-Key works too" 200 $C2 -H "X-API-Key: $FREE" "$GW/"
released 2 || bad "lease 2 not released"
# A client cannot pose as a key by sending the upstream's headers.
expect_status "forged X-Keygate-Key-Id is replaced" 200 $C2 -H "Authorization: Bearer $FREE" \
    -H "X-Keygate-Key-Id: k_0000000000000000" -H "X-Keygate-Plan: enterprise" "$GW/"
body_has "upstream sees the real id" "upstream key=$FREEID plan=free"
released 3 || bad "lease 3 not released"

gateway_denials "$GW/"

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
rate_headers_once "each rate-limit header once on the 404"

# Headers of keygated's names that a client sends never reach the
# upstream: not on a protected path (replaced by keygated's or removed)
# nor on the example's public /status (keygate-public.conf).
FORGE="-H X-Keygate-Key-Id:k_forged -H X-Keygate-Account:acct_forged -H X-Keygate-Plan:enterprise
 -H X-Keygate-Priority:99 -H X-Keygate-Lease:forged"
expect_status "public /status with forged X-Keygate-*" 200 $C2 $FORGE "$GW/status"
body_has "... none reaches the upstream" "upstream key= plan= priority= lease= account=$"
expect_status "protected path with forged X-Keygate-*" 200 $C2 $FORGE -H "Authorization: Bearer $PRO" "$GW/v1/jobs/1"
PROID=$(key_id_of "$PRO")
# keygated's own account header: the key's account, never the forged one.
body_has "... the upstream sees keygated's only" "upstream key=$PROID plan=pro priority=2 lease=[0-9a-f]\{16\}\..* account=acct_${PROID#k_}$"

# X-Forwarded-For: what nginx saw, not what the client wrote.  nginx
# (127.0.0.1) is a trusted proxy; so is a client on 127.0.0.1 itself,
# and nginx's $proxy_add_x_forwarded_for handed keygated "203.0.113.7,
# 127.0.0.1", whose right-most untrusted entry is the client's invention.
expect_status "allowlisted key, spoofed X-Forwarded-For from a trusted address" 403 \
    -H "X-Forwarded-For: 203.0.113.7" -H "Authorization: Bearer $XFFK" "$GW/v1/scrape"
body_has "spoofed X-Forwarded-For: JSON" '"code":"ip_not_allowed"'

# The access log keeps the client's status (keygate-log.conf), not the
# 204 of post_action's release: the upstream's 500 and a 200.
expect_status "upstream 500 proxied" 500 $C2 -H "Authorization: Bearer $PRO" "$GW/v1/fail"
body_has "500 is the upstream's" "upstream: failed"
expect_status "allowed request to log" 200 $C2 -H "Authorization: Bearer $PRO" "$GW/v1/logged"
logged() {  # logged PATH STATUS: the access log's line for PATH says STATUS
    grep -q "\"GET $1 HTTP/1\.1\" $2 " "$N/logs/api.access.log"
}
wait_for 100 logged /v1/logged 200 && ok "access log: 200 for an allowed request" \
    || bad "access log, allowed request: $(grep /v1/logged "$N/logs/api.access.log")"
wait_for 100 logged /v1/fail 500 && ok "access log: the upstream's 500" \
    || bad "access log, upstream 500: $(grep /v1/fail "$N/logs/api.access.log")"
grep -q '" 204 ' "$N/logs/api.access.log" && bad "post_action's 204 in the access log: $(grep '" 204 ' "$N/logs/api.access.log")" \
    || ok "no 204 in the access log"

# Clients that hang up while keygated decides.  A relay between a second
# nginx and keygated holds each answer back 0.4 s, so that keygated has
# taken the lease when the client (curl --max-time 0.1 .. 0.6) leaves:
# the lease must still be released, and no lease be held once all are
# done (Pro: 10 in flight; a held lease lasts lease_ttl, 5 minutes).
N2=$T/nginx2
RPORT=$(free_port)
F2PORT=$(free_port)
bg_start python3 "$S/tests/keygated/slowrelay.py" "$RPORT" "$KGD_PORT" 0.4 2>"$T/relay.err"
wait_for 100 curl -s -o /dev/null "http://127.0.0.1:$RPORT/healthz" || bad "the relay did not start: $(cat "$T/relay.err")"
nginx_site "$N2" "$F2PORT" "$RPORT"
NGINX2_PID=$NGINX_PID
held() {  # the number of ABORT's leases held now, from /whoami
    curl -s --max-time 5 -H "Authorization: Bearer $ABORT" "$KGD/whoami" | python3 -c '
import json, sys
print([10 - l["remaining"] for l in json.load(sys.stdin)["limits"] if l["name"] == "concurrency"][0])'
}
none_held() { [ "$(held)" = 0 ]; }
released_before=$(curl -s "$KGD/metrics" | sed -n 's/^keygated_lease_releases_total{result="released"} //p')
clients=
for t in 0.10 0.15 0.20 0.25 0.30 0.10 0.15 0.20 0.50 0.60; do
    curl -s -o /dev/null --max-time "$t" $C2 -H "Authorization: Bearer $ABORT" "http://127.0.0.1:$F2PORT/v1/scrape" &
    clients="$clients $!"
done
wait $clients
released_after=$(curl -s "$KGD/metrics" | sed -n 's/^keygated_lease_releases_total{result="released"} //p')
wait_for 100 none_held && ok "clients that hung up hold no lease ($((released_after - released_before)) released so far)" \
    || bad "$(held) leases held after the clients hung up"
expect_status "the key is not busy after them" 200 $C2 -H "Authorization: Bearer $ABORT" "http://127.0.0.1:$F2PORT/v1/scrape"
# Logged as nginx logs a client that left (499), not as "009" (the
# $status of a request with no answer yet, in post_action).
grep -q '" 499 ' "$N2/logs/api.access.log" && ! grep -q '" 009 ' "$N2/logs/api.access.log" \
    && ok "clients that hung up are logged 499" || bad "hung-up clients logged: $(cut -d'"' -f3 "$N2/logs/api.access.log" | tr '\n' '|')"
bg_stop "$NGINX2_PID"

# keygated gone: fail closed with 503, not 500.
stop_keygated
expect_status "keygated down" 503 $C2 -H "Authorization: Bearer $PRO" "$GW/"
body_has "keygated down: JSON" '"code":"auth_unavailable"'

bg_stop "$NGINX_PID"
grep -q '\[alert\]\|\[emerg\]' "$N/logs/error.log" && bad "nginx alerts: $(grep alert "$N/logs/error.log")" || ok "no nginx alerts"
finish
