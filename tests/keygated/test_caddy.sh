#!/bin/sh
# Real Caddy (Debian's) with the shipped forward_auth snippet
# (conf/caddy/keygate.caddy) in front of a small upstream that echoes the
# X-Keygate-* headers and releases each lease, keygated with the shipped
# policy.  Same checks as through nginx: allowed requests reach the
# upstream with the key id and answer the client with keygated's
# rate-limit headers (a client's own are dropped); missing, revoked, expired, wrong-IP and
# wrong-permission keys get the right status and JSON; the Free plan's
# 11th request in the hour gets 429 with Retry-After.
. "${KEYGATE_SRCDIR:-.}/tests/keygated/lib.sh"

CADDY=$(command -v caddy || echo /usr/bin/caddy)
[ -x "$CADDY" ] || { echo "caddy is not installed (scripts/deps.sh --test)"; exit 77; }
command -v python3 >/dev/null || { echo "python3 is needed"; exit 1; }

POLICY=$S/conf/keygate.yaml
gateway_keys
XFFK=$(new_key xff pro --allow-ip 203.0.113.0/24)

start_keygated --trusted-proxy 127.0.0.1/32

UPORT=$(free_port)
CPORT=$(free_port)
bg_start python3 "$S/tests/keygated/upstream.py" "$UPORT" "$KGD" 2>"$T/upstream.err"
mkdir -p "$T/caddy"
cat >"$T/caddy/Caddyfile" <<CADDY
{
	admin off
	auto_https off
	storage file_system $T/caddy/data
}
http://127.0.0.1:$CPORT {
	bind 127.0.0.1
	import $S/conf/caddy/keygate.caddy
	reverse_proxy 127.0.0.1:$UPORT
}
CADDY
bg_start env HOME="$T/caddy" XDG_DATA_HOME="$T/caddy" XDG_CONFIG_HOME="$T/caddy" \
    KEYGATED="127.0.0.1:$KGD_PORT" "$CADDY" run --config "$T/caddy/Caddyfile" --adapter caddyfile >"$T/caddy/out" 2>&1
CADDY_PID=$BG_PID
GW="http://127.0.0.1:$CPORT"
wait_http "$GW/" 401 "$CADDY_PID" && ok "caddy runs with the shipped snippet" \
    || { bad "caddy did not start: $(cat "$T/caddy/out")"; finish; }
wait_http "http://127.0.0.1:$UPORT/" any || bad "the upstream did not start: $(cat "$T/upstream.err")"
C2="--interface 127.0.0.2"
C3="--interface 127.0.0.3"

expect_status "no key" 401 $C2 "$GW/v1/scrape"
body_has "no key: JSON through Caddy" '{"error":{"code":"unauthorized"'
has_header "no key: WWW-Authenticate" 'WWW-Authenticate: Bearer realm="whizo API"'

FREEID=$(key_id_of "$FREE")
expect_status "free key allowed" 200 $C2 -H "Authorization: Bearer $FREE" "$GW/v1/scrape?url=x"
body_has "upstream got the key id, released the lease" "upstream key=$FREEID plan=free priority=0 released=204"
# forward_auth copies into the request only: the snippet copies the
# rate-limit headers on into the response.
has_header "client sees X-RateLimit-Limit" "X-RateLimit-Limit: 10$"
has_header "client sees X-RateLimit-Remaining" "X-RateLimit-Remaining: 9$"
has_header "client sees X-RateLimit-Reset" "X-RateLimit-Reset: [0-9]\{10\}$"
has_header "client sees RateLimit" 'RateLimit: "hour";r=9;t=[0-9]*, "day";r=99;'
has_header "client sees RateLimit-Policy" 'RateLimit-Policy: "hour";q=10;w=3600'
expect_status "a client's own X-RateLimit-* are not echoed" 200 $C2 -H "Authorization: Bearer $PRO" \
    -H "X-RateLimit-Limit: 999" -H "RateLimit-Policy: forged" "$GW/"
has_header "... keygated's Pro limit instead" "X-RateLimit-Limit: 200$"
has_header "... and its policy" 'RateLimit-Policy: "hour";q=200;w=3600'
nrl=$(tr -d '\r' <"$T/h" | grep -ci '^X-RateLimit-Limit:')
[ "$nrl" -eq 1 ] && ok "one X-RateLimit-Limit" || bad "$nrl X-RateLimit-Limit headers"
expect_status "X-API-Key works too" 200 $C2 -H "X-API-Key: $FREE" "$GW/"
expect_status "forged X-Keygate-Key-Id is dropped" 200 $C2 -H "Authorization: Bearer $FREE" \
    -H "X-Keygate-Key-Id: k_0000000000000000" -H "X-Keygate-Plan: enterprise" "$GW/"
body_has "upstream sees the real id" "upstream key=$FREEID plan=free"
expect_status "forged X-Keygate-Account, -Lease" 200 $C2 -H "Authorization: Bearer $PRO" \
    -H "X-Keygate-Account: acct_forged" -H "X-Keygate-Lease: forged" "$GW/"
PROID=$(key_id_of "$PRO")
# keygated's own account header: the key's account, never the forged one.
body_has "... do not reach the upstream" "upstream key=$PROID plan=pro priority=2 released=204 account=acct_${PROID#k_}$"

gateway_denials "$GW/"
# Caddy (127.0.0.1) is a trusted proxy, and so is a client on 127.0.0.1:
# Caddy must hand keygated the address it saw, not the client's words.
expect_status "allowlisted key, spoofed X-Forwarded-For from a trusted address" 403 \
    -H "X-Forwarded-For: 203.0.113.7" -H "Authorization: Bearer $XFFK" "$GW/v1/scrape"
body_has "spoofed X-Forwarded-For: JSON" '"code":"ip_not_allowed"'

expect_status "read-only key reads" 200 $C2 -H "Authorization: Bearer $RO" "$GW/v1/jobs/17"
expect_status "read-only key writes" 403 $C2 -X POST -H "Authorization: Bearer $RO" "$GW/v1/jobs"
body_has "wrong permission: JSON" '"code":"insufficient_permissions"'
expect_status "forged X-Original-Method does not help" 403 $C2 -X POST -H "X-Original-Method: GET" \
    -H "X-Original-URI: /v1/jobs" -H "Authorization: Bearer $RO" "$GW/v1/jobs"

free_hour_spent "$GW/v1/scrape" $C2

stop_keygated
req $C2 -H "Authorization: Bearer $PRO" "$GW/"
case "$CODE" in 5*) ok "keygated down: $CODE, fails closed" ;; *) bad "keygated down: $CODE" ;; esac
finish
