#!/bin/sh
# An account's own alert settings through keygated's admin API (issue 20;
# docs/admin-api.md "Alerts", docs/alerts.md "Per-account rules"), on a
# real keygated with the shipped policy (SQLite) and a webhook receiver
# on loopback: tests/keygated/admin_alerts_client.js drives the routes
# with an operator key and a customer key (both scopes, bad input, ETags,
# the generated secret answered once, the audit trail, every answer
# validated against docs/openapi.json), first on keygated as shipped
# (customers: https:// to public addresses only), then with
# --admin-webhook-insecure, where the customer's receiver is the test's:
# its quota-80 webhook there verifies with the secret the API answered
# (`keygate webhook verify`), and with no other.
. "${KEYGATE_SRCDIR:-.}/tests/keygated/lib.sh"
. "$S/tests/keygated/npm_cache.sh"

command -v python3 >/dev/null || { echo "python3 is needed"; exit 77; }
"$KEYGATED" --help | grep -q -- --admin-listen ||
    { echo "SKIP: keygated was built without the admin API (jansson)"; exit 77; }
[ -f "$B/plugins/.libs/webhook.so" ] || [ -f "$B/plugins/webhook.so" ] ||
    { echo "the webhook notifier was not built (no libcurl)"; exit 77; }
[ -f "$B/plugins/.libs/sql.so" ] || { echo "the sql plugin was not built"; exit 77; }

CACHE=$(cd "$B" && pwd)/tests/node-cache
npm_cache "$CACHE" @apidevtools/swagger-parser@13.0.0 ajv@8.20.0 ajv-formats@3.0.1
ok "swagger-parser and ajv in $CACHE"

# The account's day: a run that would cross midnight UTC waits for it.
left=$(( 86400 - $(date -u +%s) % 86400 ))
[ "$left" -lt 300 ] && sleep $((left + 2))
"$KEYGATE" webhook secret new >"$T/ops.secret"
RPORT=$(free_port)
POLICY=$T/policy.yaml
{ cat "$S/conf/keygate.yaml"; cat <<EOF
admin_listen: 127.0.0.1:0
notifiers:
  ops:
    module: webhook
    options: {url: "http://127.0.0.1:$RPORT/ops", secret_file: $T/ops.secret, timeout: 2s}
alerts:
  - {name: quota-80, when: {quota: 80%}, notify: [ops]}
  - {name: spike, when: {spike: {factor: 5, over: 1h, baseline: 7d, min_requests: 100000}}, notify: [ops]}
  - {name: denials, when: {denied: {count: 1000, within: 5m}}, notify: [ops]}
  - {name: new-ip, when: {new_client_network: {prefix: 24}}, notify: [ops]}
EOF
} >"$POLICY"
OPKEY=$("$KEYGATE" --config "$POLICY" key create --plan admin --permission admin --name ops 2>"$T/create.err")
[ -n "$OPKEY" ] && ok "an operator key" || bad "operator key: $(cat "$T/create.err")"
mkdir -p "$T/r"
bg_start python3 "$S/tests/keygated/receiver.py" "$RPORT" "$T/r" >"$T/receiver.out" 2>&1
wait_for 200 grep -q ready "$T/receiver.out" || bad "the receiver did not start: $(cat "$T/receiver.out")"

# client PHASE: admin_alerts_client.js against the running keygated.
client() {
    AP=$(sed -n 's/.*admin API listener on 127\.0\.0\.1:\([0-9]*\).*/\1/p' "$T/keygated.err" | head -1)
    env ADMIN="http://127.0.0.1:$AP" CHECK="$KGD" OPKEY="$OPKEY" STORE="$1" PHASE="$1" \
        SPEC="$S/docs/openapi.json" NODE_CACHE="$CACHE" STATE="$T/state.json" \
        RECEIVER="http://127.0.0.1:$RPORT/own" RECEIVER_DIR="$T/r" \
        node "$S/tests/keygated/admin_alerts_client.js" >"$T/client-$1.out" 2>&1
    rc=$?
    cat "$T/client-$1.out"
    [ $rc -eq 0 ] && ok "$1: admin_alerts_client.js" || bad "$1: admin_alerts_client.js failed"
}

start_keygated --alerts-interval 1
client strict
stop_keygated
start_keygated --alerts-interval 1 --admin-webhook-insecure
client insecure

# ---- the account's webhook, signed with the secret the API answered ------
A=$(sed -n 's/.*"A":"\([^"]*\)".*/\1/p' "$T/state.json")
sed -n 's/.*"S1":"\([^"]*\)".*/\1/p' "$T/state.json" >"$T/s1"
sed -n 's/.*"S2":"\([^"]*\)".*/\1/p' "$T/state.json" >"$T/s2"
F=$T/alert-secrets/$A.secret
[ "$(stat -c %a "$F" 2>/dev/null)" = 600 ] && [ "$(stat -c %a "$T/alert-secrets")" = 700 ] &&
    [ "$(cat "$F")" = "$(cat "$T/s2")" ] && ok "the generated secret: 0600 in a 0700 folder, the one the API answered" ||
    bad "secret file $F: $(stat -c %a "$F" "$T/alert-secrets")"
ls "$T/alert-secrets" | grep -q -v '\.secret$' && bad "a temporary file left: $(ls "$T/alert-secrets")" ||
    ok "no temporary file left"
own=
for p in "$T"/r/*.path; do
    grep -q '^/own$' "$p" && own=${p%.path} && break
done
[ -n "$own" ] && ok "the account's own webhook: $own.body" || bad "no webhook at /own: $(ls "$T/r")"
# verify SECRET-FILE: keygate webhook verify of that webhook.
verify() {
    secret=$1
    set --
    while IFS= read -r line; do
        case "$line" in webhook-*|Webhook-*) set -- "$@" --header "$line" ;; esac
    done <"$own.headers"
    "$KEYGATE" webhook verify --secret-file "$secret" "$@" <"$own.body" 2>&1
}
out=$(verify "$T/s2") && ok "it verifies with the rotated secret the API answered: $out" ||
    bad "keygate webhook verify with S2: $out; headers: $(cat "$own.headers")"
verify "$T/s1" >/dev/null && bad "it verifies with the secret before the rotation" ||
    ok "... not with the secret before the rotation"
verify "$T/ops.secret" >/dev/null && bad "it verifies with the ops notifier's secret" ||
    ok "... nor with the ops notifier's"
stop_keygated
finish
