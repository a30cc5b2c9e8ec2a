#!/bin/sh
# test_postgres.sh - the sql keystore against a real PostgreSQL.
#
# Starts a server of its own (initdb into a temporary folder, pg_ctl on a
# free 127.0.0.1 port, as `nobody` when run as root: PostgreSQL refuses
# root), with password (SCRAM) authentication over TCP, then:
#   1. `keygate db migrate` and `keygate key create|list|show|revoke` and
#      `keygate check` end to end through the CLI;
#   2. tests/integration/check_sql_postgres (lookups, revoke after the
#      cache TTL, pool exhaustion, injection strings, accounts: the model,
#      a shared quota, suspension, several instances, a store written
#      before accounts migrated (database keygate_old), the fault test
#      that stops and starts this server mid-run);
#   3. tests/unit/check_sql_usage on database keygate_usage (the usage
#      store: adds, rollups, retention, queries, several writers, an
#      outage, a read-only server).
# Stops the server and removes everything on exit.  Skips (77) only when
# the PostgreSQL server binaries are not installed.
set -u

B=${KEYGATE_BUILDDIR:-$(pwd)}
S=${KEYGATE_SRCDIR:-.}
. "$S/tests/lib.sh"
PGBIN=${PGBIN:-}
if [ -z "$PGBIN" ]; then
    for d in /usr/lib/postgresql/*/bin; do
        [ -x "$d/initdb" ] && PGBIN=$d
    done
fi
if [ -z "$PGBIN" ] || [ ! -x "$PGBIN/pg_ctl" ]; then
    echo "SKIP: PostgreSQL server binaries not found (apt-get install postgresql)"
    exit 77
fi

tmp=$(mktemp -d /tmp/kg-pg-XXXXXX) || exit 1
chmod 755 "$tmp"
RUN=
if [ "$(id -u)" -eq 0 ]; then
    chown nobody "$tmp"
    RUN="runuser -u nobody --"
fi
PGDATA=$tmp/data

cleanup() {
    $RUN "$PGBIN/pg_ctl" -D "$PGDATA" -m immediate -w stop >/dev/null 2>&1
    rm -rf "$tmp"
}
trap cleanup EXIT INT TERM

fail() {
    echo "FAIL: $*"
    [ -f "$tmp/server.log" ] && tail -20 "$tmp/server.log"
    exit 1
}

printf '%s\n' "pg-super-$$" > "$tmp/su.pw"
chmod 644 "$tmp/su.pw"
$RUN "$PGBIN/initdb" -D "$PGDATA" -U postgres --pwfile="$tmp/su.pw" \
    --auth-local=trust --auth-host=scram-sha-256 -E UTF8 >"$tmp/initdb.log" 2>&1 \
    || { cat "$tmp/initdb.log"; fail "initdb"; }
mkdir -p "$tmp/sock" && chown nobody "$tmp/sock" 2>/dev/null

# TLS: a self-signed certificate for 127.0.0.1 (it is its own CA), and
# another CA that did not sign it.
TLSOPTS=
command -v openssl >/dev/null || fail "openssl is not installed (scripts/deps.sh --test)"
for n in server other; do
    openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj "/CN=127.0.0.1" \
        -addext "subjectAltName=IP:127.0.0.1" -keyout "$tmp/$n.key" -out "$tmp/$n.crt" \
        >/dev/null 2>&1 || fail "openssl req"
done
chmod 600 "$tmp/server.key"
[ -n "$RUN" ] && chown nobody "$tmp/server.key"
TLSOPTS="-c ssl=on -c ssl_cert_file=$tmp/server.crt -c ssl_key_file=$tmp/server.key"

started=
for attempt in 1 2 3 4 5; do
    PORT=$(free_port)
    PGOPTS="-p $PORT -k $tmp/sock -c listen_addresses=127.0.0.1 -c max_connections=40 -c fsync=off $TLSOPTS"
    if $RUN "$PGBIN/pg_ctl" -D "$PGDATA" -l "$tmp/server.log" -o "$PGOPTS" -w -t 30 start >/dev/null 2>&1; then
        started=1
        break
    fi
done
[ -n "$started" ] || fail "could not start PostgreSQL"

PSQL="$RUN $PGBIN/psql -X -q -v ON_ERROR_STOP=1 -h $tmp/sock -p $PORT -U postgres"
PASSWORD="kg-test-$$-pw"
$PSQL -d postgres -c "CREATE ROLE keygate LOGIN PASSWORD '$PASSWORD'" \
    -c "CREATE DATABASE keygate OWNER keygate" -c "CREATE DATABASE keygate_cli OWNER keygate" \
    -c "CREATE DATABASE keygate_old OWNER keygate" -c "CREATE DATABASE keygate_usage OWNER keygate" \
    -c "CREATE DATABASE keygate_alerts OWNER keygate" \
    || fail "creating the role and the databases"

# What the Check program and the policies use.
export KG_TEST_PG_PASSWORD="$PASSWORD"
export KG_TEST_PG_CONNINFO="host=127.0.0.1 port=$PORT dbname=keygate user=keygate"
export KG_TEST_PG_STOP="$RUN $PGBIN/pg_ctl -D $PGDATA -m fast -w stop"
export KG_TEST_PG_START="$RUN $PGBIN/pg_ctl -D $PGDATA -l $tmp/server.log -o '$PGOPTS' -w -t 30 start"
export KG_TEST_PG_SUPER="$PSQL -d keygate"

# ---- 1. the CLI, end to end -----------------------------------------------
K="$B/tools/keygate"
cat > "$tmp/policy.yaml" <<EOF
version: 1
key_prefix: whizo
credential:
  - {module: bearer, control: required}
keystore:
  - module: sql
    control: required
    cache: {ttl: 5s, negative_ttl: 1s}
    options:
      driver: postgresql
      # A dead first host: libpq fails over to the next one.
      conninfo: "host=127.0.0.1,127.0.0.1 port=1,$PORT dbname=keygate_cli user=keygate"
      password: \${KG_TEST_PG_PASSWORD}
      sslmode: disable
      pool_size: 2
plans:
  # keys may hold permissions (keygate key create refuses them on a plan
  # that runs no scope)
  free:
    priority: 0
    account:
      - {module: scope, options: {unmapped: allow, routes: {"POST /v1/jobs": jobs:write}}}
EOF
kg() { "$K" --config "$tmp/policy.yaml" "$@"; }

out=$(kg db status 2>&1) || fail "db status: $out"
[ "$out" = "schema version 0" ] || fail "db status before migrate: $out"
out=$(kg key create --name early --plan free 2>&1) && fail "key create before migrate worked: $out"
echo "$out" | grep -q "keygate db migrate" || fail "key create before migrate: $out"
# the newest version: the highest NNN of conf/sql/NNN_*.sql
latest=$(ls "$S"/conf/sql | sed -n 's/^0*\([0-9][0-9]*\)_.*/\1/p' | sort -n | tail -1)
out=$(kg db migrate 2>&1) || fail "db migrate: $out"
[ "$out" = "migrated the schema from version 0 to $latest" ] || fail "db migrate: $out"
out=$(kg db migrate 2>&1) || fail "db migrate again: $out"
[ "$out" = "schema version $latest: up to date" ] || fail "db migrate again: $out"

key=$(kg key create --name "O'Brien; DROP TABLE keygate_keys;--" --plan free --permission scrape:read 2>"$tmp/err") \
    || fail "key create: $(cat "$tmp/err")"
echo "$key" | grep -Eq '^whizo_[0-9A-Za-z]{38}$' || fail "key create printed '$key'"
id=$(kg --json key list | sed -n 's/.*"id":"\([^"]*\)".*/\1/p')
[ -n "$id" ] || fail "key list shows no key"
kg key list | grep -q "O'Brien; DROP TABLE keygate_keys;--" || fail "key list lacks the name"
kg key show "$id" | grep -q "permissions: scrape:read" || fail "key show"
kg key show "x' OR '1'='1" >/dev/null 2>&1 && fail "key show of an injection string found a key"
kg check --header "Authorization: Bearer $key" >/dev/null || fail "check of a new key denied"
kg key revoke "$id" >/dev/null || fail "key revoke"
out=$(kg check --header "Authorization: Bearer $key" 2>&1) && fail "check of a revoked key allowed"
echo "$out" | grep -q key_revoked || fail "revoked key: $out"
n=$($PSQL -d keygate_cli -tAc "SELECT count(*) FROM keygate_keys WHERE status = 'revoked'")
[ "$n" = 1 ] || fail "the database has $n revoked keys, expected 1"
# The CLI's changes are audited in keygate_audit (docs/audit.md): the
# key's account of its own, the create and the revoke, by cli:<user>,
# neither the key nor its hash in the table.
out=$(kg audit --json) || fail "audit: $out"
echo "$out" | grep -q "\"action\":\"key.revoke\",\"target\":\"$id\"" || fail "audit lacks the revoke: $out"
echo "$out" | grep -q "\"action\":\"key.create\",\"target\":\"$id\"" || fail "audit lacks the create: $out"
echo "$out" | grep -q "\"actor\":\"cli:$(id -un)\"" || fail "audit's actor: $out"
hash=$(printf '%s' "$key" | sha256sum | cut -d' ' -f1)
n=$($PSQL -d keygate_cli -tAc "SELECT count(*) FROM keygate_audit WHERE keygate_audit::text LIKE '%$key%' OR keygate_audit::text LIKE '%$hash%'")
[ "$n" = 0 ] || fail "$n audit rows hold the key or its hash"
echo "$out" | grep -q "\"action\":\"account.create\"" || fail "audit lacks the key's account of its own: $out"
n=$($PSQL -d keygate_cli -tAc "SELECT count(*) FROM keygate_audit")
[ "$n" = 3 ] || fail "keygate_audit has $n rows, expected 3 (account.create, key.create, key.revoke)"

# A wrong password: a clear error that never shows the password.
sed "s/password: .*/password: wrong-secret-4711/" "$tmp/policy.yaml" > "$tmp/bad.yaml"
out=$("$K" --config "$tmp/bad.yaml" key list 2>&1) && fail "key list with a wrong password worked"
echo "$out" | grep -q "password authentication failed" || fail "wrong password: $out"
echo "$out" | grep -q "wrong-secret-4711" && fail "the password was printed: $out"

# TLS options reach libpq: verify-full against the server's own CA
# works; against another CA it is refused, and says why.  Under
# LeakSanitizer these two runs ignore what libcrypto allocates: libpq's
# TLS start-up leaves OpenSSL's per-process state to the exit.
printf 'leak:libcrypto.so\n' > "$tmp/lsan.supp"
kgtls() { LSAN_OPTIONS="${LSAN_OPTIONS:+$LSAN_OPTIONS:}suppressions=$tmp/lsan.supp" "$K" "$@"; }
sed "s|^      sslmode: disable|      sslmode: verify-full\n      sslrootcert: $tmp/server.crt|" "$tmp/policy.yaml" > "$tmp/tls.yaml"
out=$(kgtls --config "$tmp/tls.yaml" key list 2>&1) || fail "verify-full with the right CA: $out"
echo "$out" | grep -q "O'Brien" || fail "verify-full with the right CA: $out"
sed "s|^      sslmode: disable|      sslmode: verify-full\n      sslrootcert: $tmp/other.crt|" "$tmp/policy.yaml" > "$tmp/tls2.yaml"
out=$(kgtls --config "$tmp/tls2.yaml" key list 2>&1) && fail "verify-full with the wrong CA worked"
echo "$out" | grep -q "certificate verify failed" || fail "verify-full with the wrong CA: $out"
# keygated answers 503 and says why, once per interval (issue 16 item 8).
LSAN_OPTIONS="${LSAN_OPTIONS:+$LSAN_OPTIONS:}suppressions=$tmp/lsan.supp" \
    backend_says_why "keygated, PostgreSQL with a wrong CA" "$tmp/tls2.yaml" "$key" \
    "keygated: postgresql host=127.0.0.1,127.0.0.1 port=1,$PORT dbname=keygate_cli: cannot connect to PostgreSQL: .*certificate verify failed" \
    "$tmp/keygated.err" >"$tmp/says.out"
cat "$tmp/says.out"
grep -q '^ok' "$tmp/says.out" || fail "keygated with the wrong CA"

# Keys revoked by the CLI reach a running instance: in the Check program.
echo "PASS: CLI end to end against PostgreSQL"

# ---- 2. the Check program ---------------------------------------------------
"$B/tests/integration/check_sql_postgres" || fail "check_sql_postgres"

# ---- 3. the usage store (issue 18), in a database of its own ---------------
if [ -x "$B/tests/unit/check_sql_usage" ]; then
    KG_TEST_PG_USAGE_CONNINFO="host=127.0.0.1 port=$PORT dbname=keygate_usage user=keygate" \
        "$B/tests/unit/check_sql_usage" || fail "check_sql_usage on PostgreSQL"
fi

# ---- 4. the alerts' outbox in that store (issue 20), a database of its own -
if [ -x "$B/tests/unit/check_alerts" ]; then
    KG_TEST_PG_ALERTS_CONNINFO="host=127.0.0.1 port=$PORT dbname=keygate_alerts user=keygate" \
        CK_RUN_CASE=delivery "$B/tests/unit/check_alerts" || fail "check_alerts on PostgreSQL"
fi
exit 0
