#!/bin/sh
# keygated over HTTP (curl against a real keygated on a free port): every
# endpoint and every decision code of docs/architecture.md's table, the original
# request from nginx / Traefik / Caddy / Envoy conventions, the client
# address through trusted proxies, the access log, --check-config, and a
# SIGHUP with a broken and then a fixed policy.
. "${KEYGATE_SRCDIR:-.}/tests/keygated/lib.sh"

POLICY=$T/policy.yaml
cat >"$POLICY" <<'YAML'
version: 1
key_prefix: whizo
realm: "test API"
credential:
  - {module: bearer, control: optional}
  - {module: header, control: optional, options: {name: X-API-Key}}
keystore:
  - {module: file, control: required, options: {path: keys.yaml}, cache: {ttl: 1m, negative_ttl: 1s}}
plans:
  free:
    account:
      - {module: ipacl, control: requisite}
    limit:
      - {module: fixed_window, control: requisite, options: {name: hour, count: 3, window: 1h}}
      - {module: concurrency, control: requisite, options: {name: concurrency, count: 1}}
  scoped:
    account:
      - module: scope
        control: requisite
        options:
          unmapped: deny
          routes:
            "GET /v1/jobs": jobs:read
            "POST /v1/jobs": jobs:write
  down:
    account:
      - {module: scripted, control: required, options: {result: unavailable}}
YAML
cp "$POLICY" "$T/policy.good"

# --check-config
out=$("$KEYGATED" --config "$POLICY" --check-config 2>&1); rc=$?
[ $rc -eq 0 ] && ok "--check-config accepts the policy" || bad "--check-config: $rc $out"
printf 'version: 1\ncredential: []\nbogus: 1\n' >"$T/bad.yaml"
out=$("$KEYGATED" --config "$T/bad.yaml" --check-config 2>&1); rc=$?
[ $rc -eq 2 ] && printf '%s' "$out" | grep -q "bad.yaml:[0-9]*:[0-9]*:" \
    && ok "--check-config refuses a bad policy with file:line:column" || bad "--check-config bad: $rc $out"
out=$("$KEYGATED" --bogus 2>&1); [ $? -eq 2 ] && ok "unknown option: exit 2" || bad "unknown option: $out"
"$KEYGATED" --help | grep -q -- "--trusted-proxy" && ok "--help documents --trusted-proxy" || bad "--help"
out=$("$KEYGATED" --listen nowhere 2>&1); [ $? -eq 2 ] && printf '%s' "$out" | grep -q "ADDR:PORT" \
    && ok "bad --listen explained" || bad "bad --listen: $out"
out=$("$KEYGATED" --limit-capacity 5 2>&1); [ $? -eq 2 ] && printf '%s' "$out" | grep -q "limit-capacity wants a number from 1000" \
    && ok "bad --limit-capacity explained" || bad "bad --limit-capacity: $out"

FREE=$(new_key free free)
FREE2=$(new_key free2 free)
NOLEASE=$(new_key nolease free)
IPKEY=$(new_key ip free --allow-ip 203.0.113.0/24)
SCOPED=$(new_key scoped scoped --permission jobs:read)
DOWN=$(new_key down down)
REV=$(new_key rev free)
EXP=$(new_key exp free --expires 2020-01-01)
"$KEYGATE" --config "$POLICY" key revoke "$(key_id_of "$REV")" >/dev/null
[ -n "$FREE" ] && [ -n "$SCOPED" ] && [ -n "$EXP" ] && ok "keys created" || bad "key creation"

start_keygated --limit-capacity 100000

# ---- small endpoints -------------------------------------------------------
expect_status "healthz" 200 "$KGD/healthz"
body_has "healthz body" "ok"
expect_status "unknown endpoint" 404 "$KGD/nope"
body_has "404 is JSON" '"code":"not_found"'
expect_status "POST /whoami" 405 -X POST "$KGD/whoami"
has_header "405 says what is allowed" "Allow: GET"
expect_status "GET /leases/x" 405 "$KGD/leases/x"

# ---- 401 unauthorized ------------------------------------------------------
expect_status "no key" 401 "$KGD/check"
body_has "no key: JSON code" '{"error":{"code":"unauthorized","message":"missing API key'
has_header "no key: WWW-Authenticate" 'WWW-Authenticate: Bearer realm="test API"$'
has_header "no key: X-Keygate-Status for nginx" "X-Keygate-Status: 401"
no_header "no key: no X-Keygate-Error unless asked for" 'X-Keygate-Error:'
expect_status "no key, X-Keygate-Want-Error" 401 -H "X-Keygate-Want-Error: 1" "$KGD/check"
has_header "no key: X-Keygate-Error carries the body when asked" 'X-Keygate-Error: {"error":{"code":"unauthorized"'
has_header "denial is JSON" "Content-Type: application/json"
expect_status "bad checksum" 401 -H "Authorization: Bearer whizo_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA" "$KGD/check"
has_header "bad key: invalid_token" 'WWW-Authenticate: Bearer realm="test API", error="invalid_token"'
UNKNOWN=$("$KEYGATE" --config "$T/policy.good" key create --name x --plan free 2>/dev/null)
"$KEYGATE" --config "$POLICY" key revoke "$(key_id_of "$UNKNOWN")" >/dev/null
expect_status "any method on /check" 401 -X PUT "$KGD/check/v1/jobs"

# ---- 400 invalid_request ---------------------------------------------------
expect_status "two different keys" 400 -H "Authorization: Bearer $FREE" -H "X-API-Key: $FREE2" "$KGD/check"
body_has "two keys: code" '"code":"invalid_request"'
expect_status "Bearer with two tokens" 400 -H "Authorization: Bearer a b" "$KGD/check"
expect_status "malformed X-Original-URI" 400 -H "Authorization: Bearer $FREE" -H "X-Original-URI: nope" "$KGD/check"

# ---- 200, leases, 429 ------------------------------------------------------
expect_status "whoami" 200 -H "Authorization: Bearer $FREE" "$KGD/whoami"
body_has "whoami: the record" '"name":"free"'
body_has "whoami: the plan" '"plan":"free"'
body_has "whoami: limits and what remains" '{"name":"hour","limit":3,"remaining":3'
if grep -q "$FREE" "$T/b" || grep -q '"hash"' "$T/b"; then bad "whoami shows the key or its hash"; else ok "whoami shows neither key nor hash"; fi
expect_status "whoami consumes nothing" 200 -H "Authorization: Bearer $FREE" "$KGD/whoami"
body_has "still 3 remaining" '"remaining":3'
expect_status "whoami without a key" 401 "$KGD/whoami"

expect_status "free key allowed" 200 -H "Authorization: Bearer $FREE" "$KGD/check"
has_header "allowed: key id for the upstream" "X-Keygate-Key-Id: $(key_id_of "$FREE")"
has_header "allowed: plan" "X-Keygate-Plan: free"
has_header "allowed: priority" "X-Keygate-Priority: 0"
has_header "allowed: lease" "X-Keygate-Lease: "
has_header "allowed: X-RateLimit-Limit" "X-RateLimit-Limit: "
has_header "allowed: RateLimit-Policy" 'RateLimit-Policy: "hour";q=3;w=3600'
LEASE=$(header_value X-Keygate-Lease)
expect_status "second request in flight" 429 -H "Authorization: Bearer $FREE" "$KGD/check"
body_has "in flight: rate_limited" '"code":"rate_limited"'
has_header "429 Retry-After" "Retry-After: "
expect_status "DELETE /leases/<id>" 204 -X DELETE "$KGD/leases/$LEASE"
expect_status "DELETE it again" 404 -X DELETE "$KGD/leases/$LEASE"
body_has "unknown lease: JSON" '"code":"lease_not_found"'
expect_status "malformed lease" 400 -X DELETE "$KGD/leases/zz"
for n in 2 3; do
    expect_status "X-API-Key request $n" 200 -H "X-API-Key: $FREE" "$KGD/check"
    curl -s -o /dev/null -X DELETE "$KGD/leases/$(header_value X-Keygate-Lease)"
done
expect_status "4th request in the hour" 429 -H "Authorization: Bearer $FREE" "$KGD/check"
body_has "4th: rate_limited" '"code":"rate_limited"'
has_header "4th: Retry-After" "Retry-After: [1-9]"
has_header "4th: X-RateLimit-Remaining 0" "X-RateLimit-Remaining: 0"
has_header "4th: X-RateLimit-Reset" "X-RateLimit-Reset: [0-9]"
has_header "4th: X-Keygate-Status 429" "X-Keygate-Status: 429"
no_header "4th: no lease" "X-Keygate-Lease"
expect_status "whoami of a limited key" 200 -H "Authorization: Bearer $FREE" "$KGD/whoami"
body_has "whoami: hour exhausted" '{"name":"hour","limit":3,"remaining":0'

# ---- /check?lease=none: limits by rate only, no lease (issue 23 item 9) -----
# NOLEASE: 3 an hour, 1 in flight.  Two checks that hold no lease pass one
# after the other (without lease=none the second is a 429), the hourly
# count still applies.
expect_status "lease=none: allowed" 200 -H "Authorization: Bearer $NOLEASE" "$KGD/check?lease=none"
no_header "lease=none: no X-Keygate-Lease" "X-Keygate-Lease"
has_header "lease=none: the hour counted" 'RateLimit: "hour";r=2'
expect_status "lease=none again: allowed (no lease held)" 200 -H "Authorization: Bearer $NOLEASE" \
    -H "X-Original-URI: /v1/x?lease=1" "$KGD/check?lease=none"
no_header "lease=none again: no X-Keygate-Lease" "X-Keygate-Lease"
expect_status "then a check that takes a lease" 200 -H "Authorization: Bearer $NOLEASE" "$KGD/check"
has_header "it holds one" "X-Keygate-Lease: "
curl -s -o /dev/null -X DELETE "$KGD/leases/$(header_value X-Keygate-Lease)"
expect_status "lease=none: the hour still limits" 429 -H "Authorization: Bearer $NOLEASE" "$KGD/check?lease=none"
has_header "lease=none 429: by the hour" 'RateLimit: "hour";r=0'
expect_status "lease=other: refused" 400 -H "Authorization: Bearer $NOLEASE" "$KGD/check?lease=yes"
body_has "lease=other: says why" "lease may only be 'none'"

# ---- 401 revoked / expired, 503 --------------------------------------------
expect_status "revoked key" 401 -H "Authorization: Bearer $REV" "$KGD/check"
body_has "revoked: code" '"code":"key_revoked"'
expect_status "expired key" 401 -H "Authorization: Bearer $EXP" "$KGD/check"
body_has "expired: code" '"code":"key_expired"'
expect_status "store or account backend down" 503 -H "Authorization: Bearer $DOWN" "$KGD/check"
body_has "503: auth_unavailable" '"code":"auth_unavailable"'

# ---- 403 ip_not_allowed, client address ------------------------------------
expect_status "peer outside the key's allowlist" 403 -H "Authorization: Bearer $IPKEY" "$KGD/check"
body_has "403: ip_not_allowed" '"code":"ip_not_allowed"'
expect_status "X-Forwarded-For from a trusted peer" 200 -H "Authorization: Bearer $IPKEY" \
    -H "X-Forwarded-For: 203.0.113.9" "$KGD/check"
curl -s -o /dev/null -X DELETE "$KGD/leases/$(header_value X-Keygate-Lease)"
expect_status "forged left-most entry does not count" 403 -H "Authorization: Bearer $IPKEY" \
    -H "X-Forwarded-For: 203.0.113.9, 198.51.100.1" "$KGD/check"
expect_status "right-most untrusted entry counts" 200 -H "Authorization: Bearer $IPKEY" \
    -H "X-Forwarded-For: 198.51.100.1, 203.0.113.9, 127.0.0.1" "$KGD/check"
curl -s -o /dev/null -X DELETE "$KGD/leases/$(header_value X-Keygate-Lease)"

# ---- 403 insufficient_permissions; where the original request comes from ---
expect_status "nginx: X-Original-Method GET" 200 -H "Authorization: Bearer $SCOPED" \
    -H "X-Original-Method: GET" -H "X-Original-URI: /v1/jobs?page=2" "$KGD/check"
expect_status "nginx: X-Original-Method POST" 403 -H "Authorization: Bearer $SCOPED" \
    -H "X-Original-Method: POST" -H "X-Original-URI: /v1/jobs" "$KGD/check"
body_has "403: insufficient_permissions" '"code":"insufficient_permissions"'
expect_status "Traefik/Caddy: X-Forwarded-Method POST" 403 -H "Authorization: Bearer $SCOPED" \
    -H "X-Forwarded-Method: POST" -H "X-Forwarded-Uri: /v1/jobs" "$KGD/check"
expect_status "Traefik/Caddy: X-Forwarded-Method GET" 200 -H "Authorization: Bearer $SCOPED" \
    -H "X-Forwarded-Method: GET" -H "X-Forwarded-Uri: /v1/jobs" "$KGD/check"
expect_status "Envoy: GET /check/v1/jobs" 200 -H "Authorization: Bearer $SCOPED" "$KGD/check/v1/jobs?x=1"
expect_status "Envoy: POST /check/v1/jobs" 403 -X POST -H "Authorization: Bearer $SCOPED" "$KGD/check/v1/jobs"
expect_status "dot segments are resolved (allowed)" 200 --path-as-is -H "Authorization: Bearer $SCOPED" \
    "$KGD/check/v1/admin/../jobs"
expect_status "dot segments are resolved (denied)" 403 --path-as-is -H "Authorization: Bearer $SCOPED" \
    "$KGD/check/v1/jobs/%2e%2e/admin"

# ---- metrics ---------------------------------------------------------------
expect_status "metrics" 200 "$KGD/metrics"
body_has "metrics: allowed by plan" 'keygated_decisions_total{code="ok",plan="free"} [1-9]'
body_has "metrics: 429 by plan" 'keygated_decisions_total{code="rate_limited",plan="free"} [1-9]'
body_has "metrics: no plan for missing keys" 'keygated_decisions_total{code="unauthorized",plan=""} [1-9]'
body_has "metrics: 503 by plan" 'keygated_decisions_total{code="auth_unavailable",plan="down"} 1'
body_has "metrics: histogram" 'keygated_decision_duration_seconds_bucket{le="+Inf"} [1-9]'
body_has "metrics: lease releases" 'keygated_lease_releases_total{result="released"} [1-9]'
body_has "metrics: key-store cache hits" 'keygated_keystore_cache_total{result="hit"} [1-9]'
body_has "metrics: key-store cache misses" 'keygated_keystore_cache_total{result="miss"} [1-9]'
if grep -q "k_[0-9a-f]\{16\}" "$T/b"; then bad "metrics carry a key id"; else ok "metrics carry no key id"; fi

# ---- the access log --------------------------------------------------------
sleep 0.5   # lines are flushed within 200 ms
if python3 - "$T/access.log" <<'PY'
import json, sys
n = 0
seqs = []
for line in open(sys.argv[1], encoding="utf-8"):
    o = json.loads(line)
    for k in ("seq", "time", "key_id", "key_prefix", "plan", "client", "method", "path", "status", "code", "decided_by", "us"):
        assert k in o, (k, line)
    seqs.append(o["seq"])
    n += 1
assert n >= 25, n
# seq numbers every line once, from 1: sorting by it gives the order
# the lines were made in (docs/keygated.md, "Access log").
assert sorted(seqs) == list(range(1, n + 1)), seqs
PY
then ok "access log: one JSON object per decision, all fields"; else bad "access log not valid: $(head -3 "$T/access.log")"; fi
leak=0
for k in "$FREE" "$FREE2" "$IPKEY" "$SCOPED" "$DOWN" "$REV" "$EXP"; do
    grep -q "$k" "$T/access.log" && leak=1
done
[ $leak -eq 0 ] && ok "access log never holds a key" || bad "a key is in the access log"
# (A bare /check names no path: null, never "/".)
grep -q '"key_prefix":"whizo_..","plan":"free","client":"203.0.113.9","method":"GET","path":null,"status":200' "$T/access.log" \
    && ok "access log: prefix, plan, client from X-Forwarded-For" || bad "access log line: $(grep 203.0.113.9 "$T/access.log" | head -1)"
grep -q '"method":"POST","path":"/v1/jobs","status":403,"code":"insufficient_permissions","decided_by":"account:scope"' "$T/access.log" \
    && ok "access log: original method/path, code, decided_by" || bad "access log scope line missing"

# ---- SIGHUP ----------------------------------------------------------------
printf 'version: 1\nplans: {free: {}}\ncredential: [' >"$POLICY"
kill -HUP "$KGD_PID"; wait_log "reload failed"
grep -q "reload failed; the previous policy keeps serving" "$T/keygated.err" \
    && ok "broken policy: reload refused and logged" || bad "no reload failure logged: $(cat "$T/keygated.err")"
expect_status "old policy still serving" 429 -H "Authorization: Bearer $FREE" "$KGD/check"
cp "$T/policy.good" "$POLICY"
kill -HUP "$KGD_PID"; wait_log "reloaded policy"
grep -q "reloaded policy" "$T/keygated.err" && ok "good policy reloaded" || bad "no reload logged"
expect_status "limiter state survives the reload" 429 -H "Authorization: Bearer $FREE" "$KGD/check"
expect_status "new policy serves" 200 -H "Authorization: Bearer $FREE2" "$KGD/check"
expect_status "metrics after reload" 200 "$KGD/metrics"
body_has "metrics: reloads" 'keygated_reloads_total{result="ok"} 1'
body_has "metrics: failed reloads" 'keygated_reloads_total{result="failed"} 1'

stop_keygated
finish
