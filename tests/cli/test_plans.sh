#!/bin/sh
# The shipped policy's plans through `keygate check` (issue: plans enforced):
# a Free key is allowed 10 times and the 11th gets 429 with Retry-After and
# the rate-limit headers; an IP outside the key's allowlist gets 403
# ip_not_allowed; a read-only Enterprise key on a write route gets 403
# insufficient_permissions; a revoked key 401 key_revoked; an expired one
# 401 key_expired.  And keygate check and keygated (when built) decide
# the same targets alike (issue 16 item 3).
set -u
B=${KEYGATE_BUILDDIR:-.}
S=${KEYGATE_SRCDIR:-.}
. "$S/tests/lib.sh"   # bg_start, wait_for
KG="$B/tools/keygate --config $S/conf/keygate.yaml"
KEYGATE_STATE_DIR=$(mktemp -d)
export KEYGATE_STATE_DIR
trap 'bg_stop_all; rm -rf "$KEYGATE_STATE_DIR"' EXIT
fail=0
ok() { echo "ok - $1"; }
bad() { echo "FAIL - $1"; fail=1; }
expect() {  # expect DESC WANTED_RC OUTPUT_PATTERN -- command...
    desc=$1; want=$2; pat=$3; shift 4
    out=$("$@" 2>&1); rc=$?
    if [ "$rc" -ne "$want" ]; then bad "$desc: exit $rc, wanted $want: $out"; return; fi
    if ! printf '%s\n' "$out" | grep -q -- "$pat"; then bad "$desc: output lacks '$pat': $out"; return; fi
    ok "$desc"
}

FREE=$($KG key create --name free-demo --plan free 2>/dev/null) || bad "create free key"
out=$($KG check --header "Authorization: Bearer $FREE" --repeat 11)
rc=$?
[ "$rc" -eq 1 ] && ok "11th request makes check exit 1" || bad "repeat exit $rc"
n_allowed=$(printf '%s\n' "$out" | grep -c ' allowed 200 ')
[ "$n_allowed" -eq 10 ] && ok "10 allowed" || bad "allowed $n_allowed times: $out"
last=$(printf '%s\n' "$out" | tail -1)
case "$last" in
    "11 denied 429 rate_limited"*) ok "11th is 429 rate_limited" ;;
    *) bad "11th: $last" ;;
esac
for h in "Retry-After: " "X-RateLimit-Limit: 10" "X-RateLimit-Remaining: 0" "X-RateLimit-Reset: " 'RateLimit-Policy: "hour";q=10;w=3600' 'RateLimit: "hour";r=0;t='; do
    printf '%s\n' "$last" | grep -q -- "$h" && ok "429 carries $h" || bad "429 lacks $h: $last"
done
first=$(printf '%s\n' "$out" | head -1)
printf '%s\n' "$first" | grep -q 'X-RateLimit-Remaining: 9' && ok "first request leaves 9" || bad "first: $first"
printf '%s\n' "$first" | grep -q 'RateLimit-Policy: "hour";q=10;w=3600, "day";q=100;w=86400' && ok "policy lists hour and day" || bad "first: $first"

# The JSON form carries the body (limiter state lives in the process:
# the 11 requests run in one).
out=$($KG --json check --header "X-API-Key: $FREE" --repeat 11)
printf '%s\n' "$out" | tail -1 | grep -q '"status":429,"code":"rate_limited".*"body":{"error":{"code":"rate_limited"' \
    && ok "429 JSON body" || bad "429 JSON: $out"

IPKEY=$($KG key create --name ip --plan pro --allow-ip 203.0.113.0/24 --allow-ip 2001:db8::/32 2>/dev/null)
expect "allowlisted IPv4" 0 'allowed 200' -- $KG check --header "Authorization: Bearer $IPKEY" --ip 203.0.113.9
expect "allowlisted v4-mapped" 0 'allowed 200' -- $KG check --header "Authorization: Bearer $IPKEY" --ip ::ffff:203.0.113.9
expect "allowlisted IPv6" 0 'allowed 200' -- $KG check --header "Authorization: Bearer $IPKEY" --ip 2001:db8::1
expect "outside the allowlist" 1 'denied 403 ip_not_allowed' -- $KG check --header "Authorization: Bearer $IPKEY" --ip 198.51.100.1

RO=$($KG key create --name ro --plan enterprise --permission '*:read' 2>/dev/null)
expect "read-only key reads" 0 'allowed 200 ok.*plan=enterprise priority=10' -- \
    $KG check --header "Authorization: Bearer $RO" --method GET --path /v1/jobs/17
expect "read-only key writes" 1 'denied 403 insufficient_permissions' -- \
    $KG check --header "Authorization: Bearer $RO" --method POST --path /v1/jobs
expect "unmapped route" 1 'denied 403 insufficient_permissions' -- \
    $KG check --header "Authorization: Bearer $RO" --method GET --path /admin

ENT=$($KG --json key create --name big --plan enterprise --permission '*' --limit hour=3/1h 2>/dev/null | sed 's/.*"key":"\([^"]*\)".*/\1/')
out=$($KG check --header "Authorization: Bearer $ENT" --method POST --path /v1/scrape --repeat 4)
printf '%s\n' "$out" | tail -1 | grep -q '4 denied 429 rate_limited.*X-RateLimit-Limit: 3' && ok "enterprise override hour=3/1h" || bad "override: $out"

REV=$($KG --json key create --name rev --plan free 2>/dev/null)
REVKEY=$(printf '%s' "$REV" | sed 's/.*"key":"\([^"]*\)".*/\1/')
REVID=$(printf '%s' "$REV" | sed 's/.*"id":"\([^"]*\)".*/\1/')
expect "revoke" 0 "revoked $REVID" -- $KG key revoke "$REVID"
expect "revoked key" 1 'denied 401 key_revoked' -- $KG check --header "Authorization: Bearer $REVKEY"

EXP=$($KG key create --name old --plan free --expires 2020-01-01 2>/dev/null)
expect "expired key" 1 'denied 401 key_expired' -- $KG check --header "Authorization: Bearer $EXP"

# ---- keygate check and keygated read a target alike ----------------------
# The same Enterprise key (jobs:read, crawl:read), the same method and
# target: `keygate check --method M --path T` and keygated's answer to
# X-Original-Method: M, X-Original-URI: T must be the same status, the one
# listed.  (The first line was 403 from the CLI, 200 from keygated.)
SCOPED=$($KG key create --name scoped --plan enterprise --permission jobs:read \
         --permission crawl:read 2>/dev/null) || bad "create scoped key"
if [ -x "$B/tools/keygated" ]; then
    bg_start "$B/tools/keygated" --config "$S/conf/keygate.yaml" --listen 127.0.0.1:0 \
        --access-log off 2>"$KEYGATE_STATE_DIR/keygated.err"
    wait_for 200 grep -q "listening on" "$KEYGATE_STATE_DIR/keygated.err"
    PORT=$(sed -n 's/.*listening on 127\.0\.0\.1:\([0-9]*\).*/\1/p' "$KEYGATE_STATE_DIR/keygated.err" | head -1)
    [ -n "$PORT" ] || bad "keygated did not start: $(cat "$KEYGATE_STATE_DIR/keygated.err")"
    while IFS=' ' read -r want m t; do
        cli=$($KG check --header "Authorization: Bearer $SCOPED" --method "$m" --path "$t" 2>&1 |
              sed -n 's/^1 [a-z]* \([0-9]*\) .*/\1/p')
        kgd=$(curl -s -o /dev/null -w '%{http_code}' --max-time 10 \
              -H "Authorization: Bearer $SCOPED" -H "X-Original-Method: $m" \
              -H "X-Original-URI: $t" "http://127.0.0.1:${PORT:-1}/check")
        desc=$(printf '%s %s' "$m" "$t" | sed 's/\\/\\\\/g')   # ok's echo halves '\\'
        if [ "$cli" = "$want" ] && [ "$kgd" = "$want" ]; then
            ok "$desc: $want from both"
        else
            bad "$desc: keygate check $cli, keygated $kgd, wanted $want"
        fi
    done <<'TARGETS'
200 GET /v1/scrape/../jobs/42
200 GET /v1/jobs/%34%32?page=2
200 GET //v1/crawl/./a/b
403 POST /v1/jobs
403 GET /v1/crawl/../admin
403 GET /admin
400 GET /v1/crawl/..;/admin
400 GET /v1/crawl/..%3B/admin
400 GET /v1/jobs/..\admin
400 GET /v1/crawl//../admin
400 GET /v1/jobs/%2F42
400 GET /v1/jobs/%%34%32
400 GET v1/jobs/42
400 G(T /v1/jobs/42
TARGETS
else
    echo "# keygated not built: only keygate check was tested"
fi

exit $fail
