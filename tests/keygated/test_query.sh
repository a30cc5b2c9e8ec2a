#!/bin/sh
# A credential plugin that reads the key from the target's query
# (tests/fixtures/querykey.c, through kg_request_target()) sees the same
# raw target from `keygate check --path '/x?api_key=...'` and from
# keygated (nginx's X-Original-URI, Envoy's /check/<path>?query): its key
# is found and checked alike.  And a 401 for no key says what the
# policy's credential lines look for, with their scheme, not a hard-coded
# "Authorization: Bearer" (issue 23 item 18).
. "${KEYGATE_SRCDIR:-.}/tests/keygated/lib.sh"

POLICY=$T/policy.yaml
cat >"$POLICY" <<'YAML'
credential:
  - {module: querykey, control: optional}
keystore:
  - {module: file, control: required, options: {path: keys.yaml}}
plans:
  free: {}
YAML
KEY=$(new_key q free)

# The command line.
out=$("$KEYGATE" --config "$POLICY" check --path "/v1/jobs?page=2&api_key=$KEY" 2>&1); rc=$?
[ $rc -eq 0 ] && printf '%s' "$out" | grep -q "allowed 200" && ok "keygate check: the key from ?api_key=" \
    || bad "keygate check ($rc): $out"
out=$("$KEYGATE" --config "$POLICY" check --path "/v1/jobs" 2>&1); rc=$?
[ $rc -eq 1 ] && printf '%s' "$out" | grep -q "missing API key (send ?api_key=<key>)" \
    && ok "keygate check without it: the hint names ?api_key=" || bad "no key ($rc): $out"
printf '%s' "$out" | grep -q 'WWW-Authenticate: APIKey realm=' && ok "no Bearer challenge without a bearer line" \
    || bad "challenge: $out"

# keygated: nginx's X-Original-URI, and Envoy's /check/<path>?query.
start_keygated
expect_status "X-Original-URI with ?api_key=" 200 -H "X-Original-URI: /v1/jobs?api_key=$KEY" "$KGD/check"
expect_status "/check/<path>?api_key= (--origin auto)" 200 "$KGD/check/v1/jobs?page=2&api_key=$KEY"
expect_status "a wrong key in the query" 401 -H "X-Original-URI: /v1/jobs?api_key=whizo_nope" "$KGD/check"
expect_status "no key" 401 -H "X-Original-URI: /v1/jobs" "$KGD/check"
body_has "no key: the hint names ?api_key=" 'missing API key (send ?api_key=<key>)'
has_header "no key: an APIKey challenge, no Bearer" 'WWW-Authenticate: APIKey realm='
stop_keygated

# Both lines: the hint names both, in order; the challenge is Bearer's.
cat >"$POLICY" <<'YAML'
credential:
  - {module: header, control: optional, options: {name: X-Token}}
  - {module: bearer, control: optional}
keystore:
  - {module: file, control: required, options: {path: keys.yaml}}
plans:
  free: {}
YAML
out=$("$KEYGATE" --config "$POLICY" check 2>&1)
printf '%s' "$out" | grep -q 'missing API key (send X-Token: <key> or Authorization: Bearer <key>)' \
    && printf '%s' "$out" | grep -q 'WWW-Authenticate: Bearer realm=' \
    && ok "header and bearer: both in the hint, Bearer's challenge" || bad "two lines: $out"
finish
