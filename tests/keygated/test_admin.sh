#!/bin/sh
# keygated's admin API (docs/admin-api.md) against a real keygated on
# loopback, with the file store, SQLite and PostgreSQL (a server of its
# own, tests/integration/pg_env.sh): the listener's
# rules (off unless asked, never on the check listener, plain HTTP only
# on loopback, TLS), the operator key the quickstart's command makes,
# then tests/keygated/admin_client.js (every route, both scopes, every
# error, pages, ETags, the audit trail, /check after create, rotate and
# revoke, every answer validated against docs/openapi.json).
#
# The validators (@apidevtools/swagger-parser, ajv, ajv-formats) are
# installed by npm into $KEYGATE_BUILDDIR/tests/node-cache (outside git,
# reused by the next run); node and npm are scripts/deps.sh --test's.
. "${KEYGATE_SRCDIR:-.}/tests/keygated/lib.sh"

"$KEYGATED" --help | grep -q -- --admin-listen \
    || { echo "SKIP: keygated was built without the admin API (jansson)"; exit 77; }

# ---- the validators ----------------------------------------------------------
. "$S/tests/keygated/npm_cache.sh"
CACHE=$(cd "$B" && pwd)/tests/node-cache
npm_cache "$CACHE" @apidevtools/swagger-parser@13.0.0 ajv@8.20.0 ajv-formats@3.0.1
ok "swagger-parser and ajv in $CACHE"

SHIPPED=$S/conf/keygate.yaml
# policy_with STORE-YAML-FILE: the shipped policy with its keystore:
# section replaced (same plans, admin among them).
policy_with() {
    awk -v ks="$1" '
        /^keystore:/ { while ((getline l < ks) > 0) print l; skip = 1; next }
        skip && /^[a-z]/ { skip = 0 }
        !skip { print }' "$SHIPPED"
}

# admin_port: the admin listener's port from keygated's start message.
admin_port() {
    sed -n 's/.*admin API listener on 127\.0\.0\.1:\([0-9]*\).*/\1/p' "$T/keygated.err" | head -1
}

# ---- the listener's rules (with the shipped policy, SQLite) ---------------------
POLICY=$SHIPPED
start_keygated
grep -q "admin API" "$T/keygated.err" && bad "an admin listener without --admin-listen" \
    || ok "no admin listener unless configured"
expect_status "the check listener has no admin API" 404 "$KGD/api/v1/me"
stop_keygated

# (under timeout: a keygated that wrongly starts must not hang the test)
out=$(timeout 10 "$KEYGATED" --config "$POLICY" --listen 127.0.0.1:0 --admin-listen 0.0.0.0:0 2>&1)
rc=$?
[ $rc -ne 0 ] && printf '%s' "$out" | grep -q "plain HTTP off a loopback address" \
    && ok "plain HTTP off loopback is refused without --admin-insecure" \
    || bad "0.0.0.0 without TLS: rc=$rc $out"
out=$(timeout 10 "$KEYGATED" --config "$POLICY" --listen 127.0.0.1:0 --admin-listen 127.0.0.1:0 --admin-cert /nonexistent 2>&1)
[ $? -ne 0 ] && printf '%s' "$out" | grep -q "come together" && ok "--admin-cert without --admin-key is refused" \
    || bad "--admin-cert alone: $out"

start_keygated --admin-listen 0.0.0.0:0 --admin-insecure
grep -q "admin API listener on 0.0.0.0:[0-9]* (plain http, --admin-insecure" "$T/keygated.err" \
    && ok "--admin-insecure: keygated says keys travel in clear" || bad "insecure: $(cat "$T/keygated.err")"
stop_keygated

# TLS: a self-signed certificate for 127.0.0.1.
openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj "/CN=127.0.0.1" \
    -addext "subjectAltName=IP:127.0.0.1" -keyout "$T/tls.key" -out "$T/tls.crt" >/dev/null 2>&1
OPKEY=$("$KEYGATE" --config "$POLICY" key create --plan admin --permission admin --name ops 2>"$T/create.err")
printf '%s' "$OPKEY" | grep -Eq '^whizo_[0-9A-Za-z]{38}$' \
    && ok "keygate key create --plan admin --permission admin --name ops: the operator key" \
    || bad "operator key: $OPKEY $(cat "$T/create.err")"
start_keygated --admin-listen 127.0.0.1:0 --admin-cert "$T/tls.crt" --admin-key "$T/tls.key"
AP=$(admin_port)
grep -q "admin API listener on 127.0.0.1:$AP (https, TLS)" "$T/keygated.err" \
    && ok "TLS: keygated says so" || bad "TLS message: $(cat "$T/keygated.err")"
expect_status "TLS: /api/v1/me over https" 200 --cacert "$T/tls.crt" \
    -H "Authorization: Bearer $OPKEY" "https://127.0.0.1:$AP/api/v1/me"
body_has "TLS: the operator's scope" '"scope":"operator"'
code=$(curl -s -o /dev/null -w '%{http_code}' --max-time 5 "http://127.0.0.1:$AP/api/v1/me")
[ "$code" != 200 ] && ok "TLS: plain HTTP gets no answer ($code)" || bad "plain HTTP on the TLS listener: $code"
stop_keygated

# admin_listen: in the policy.
{ cat "$SHIPPED"; echo "admin_listen: 127.0.0.1:0"; } >"$T/with-admin.yaml"
POLICY=$T/with-admin.yaml
start_keygated
AP=$(admin_port)
[ -n "$AP" ] && ok "the policy's admin_listen: opens the listener" || bad "admin_listen: $(cat "$T/keygated.err")"
expect_status "... which answers" 200 -H "Authorization: Bearer $OPKEY" "http://127.0.0.1:$AP/api/v1/plans"
has_header "... with nosniff" "X-Content-Type-Options: nosniff"
has_header "... and no-store" "Cache-Control: no-store"
expect_status "a path outside /api/ without a dashboard" 404 "http://127.0.0.1:$AP/nosuch.html"
has_header "... still with nosniff" "X-Content-Type-Options: nosniff"
stop_keygated

# run_client NAME POLICY [ENV=VALUE...]: keygated with the admin listener
# on POLICY, an operator key made by the CLI, then admin_client.js.
run_client() {
    name=$1 POLICY=$2
    shift 2
    key=$("$KEYGATE" --config "$POLICY" key create --plan admin --permission admin --name ops 2>"$T/create.err")
    [ -n "$key" ] || { bad "$name: operator key: $(cat "$T/create.err")"; return; }
    start_keygated --admin-listen 127.0.0.1:0 --alerts-interval 1
    AP=$(admin_port)
    env ADMIN="http://127.0.0.1:$AP" CHECK="$KGD" OPKEY="$key" STORE="$name" \
        SPEC="$S/docs/openapi.json" NODE_CACHE="$CACHE" TTL=5 USAGE=1 \
        KEYGATE_BIN="$KEYGATE" KG_POLICY="$POLICY" "$@" \
        node "$S/tests/keygated/admin_client.js" >"$T/client.out" 2>&1
    rc=$?
    grep -c '^ok - ' "$T/client.out" | { read n; echo "ok - $name: $n checks of admin_client.js passed"; }
    grep '^FAIL' "$T/client.out"
    grep 'answers validated' "$T/client.out"
    [ $rc -eq 0 ] && ok "$name: admin_client.js" || { bad "$name: admin_client.js failed"; tail -5 "$T/client.out"; }
    stop_keygated
}

# ---- the stores ---------------------------------------------------------------
# ADMIN_TEST_STORES: which of them (all three by default; CI runs all).
STORES=${ADMIN_TEST_STORES:-file sqlite postgresql}
want() { case " $STORES " in *" $1 "*) return 0 ;; esac; return 1; }
cat >"$T/ks-file.yaml" <<'EOF'
keystore:
  - module: file
    control: required
    cache: {ttl: 5s, negative_ttl: 1s}
    options:
      path: ${KEYGATE_STATE_DIR}/keys.yaml
      refresh: 1s

EOF
policy_with "$T/ks-file.yaml" >"$T/file.yaml"
want file && run_client file "$T/file.yaml"

mkdir -p "$T/sqlite"
# SQLite with an alerts: section (docs/alerts.md): the rule admin_client.js
# fires with two 403s of its customer key, to a log notifier, and
# another that it turns off for that account (keygate alerts override).
{ cat "$SHIPPED"; cat <<'EOF'
notifiers:
  log:
    module: log
alerts:
  - {name: denials, when: {denied: {codes: [insufficient_permissions], count: 2, within: 5m}}, notify: [log]}
  - {name: quota-80, when: {quota: 80%}, notify: [log]}
EOF
} >"$T/sqlite-alerts.yaml"
want sqlite && KEYGATE_STATE_DIR=$T/sqlite run_client sqlite "$T/sqlite-alerts.yaml" ALERTS=1
want postgresql || finish

# PostgreSQL: a server of its own (tests/integration/pg_env.sh).
. "$S/tests/integration/pg_env.sh"
[ -n "$PGBIN" ] || { bad "PostgreSQL server binaries not found (scripts/deps.sh --test)"; finish; }
pg_start >"$T/pg.out" 2>&1 || { bad "PostgreSQL: $(cat "$T/pg.out")"; finish; }
trap 'pg_stop; lib_cleanup' EXIT
$PG_PSQL -d postgres -c "CREATE DATABASE keygate OWNER keygate" || bad "CREATE DATABASE"
export KG_TEST_PG_PASSWORD="$PG_PASSWORD"
cat >"$T/ks-pg.yaml" <<EOF
keystore:
  - module: sql
    control: required
    cache: {ttl: 5s, negative_ttl: 1s}
    options:
      driver: postgresql
      conninfo: "host=127.0.0.1 port=$PG_PORT dbname=keygate user=keygate"
      password: \${KG_TEST_PG_PASSWORD}
      sslmode: disable

EOF
policy_with "$T/ks-pg.yaml" >"$T/pg.yaml"
"$KEYGATE" --config "$T/pg.yaml" db migrate >"$T/migrate.out" 2>&1 \
    && ok "PostgreSQL: keygate db migrate" || bad "db migrate: $(cat "$T/migrate.out")"
run_client postgresql "$T/pg.yaml"
finish
