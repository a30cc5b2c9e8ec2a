#!/bin/sh
# bench/admin/run.sh - the admin API's usage route on a big SQLite usage
# store: GET /api/v1/accounts/{id}/usage?by=hour&since=7d for random
# accounts, one client (bench/admin/client.js: wrk's percentiles with a
# request() script did not add up to its own request count), keygated
# with the shipped policy's stores
# (SQLite keys.db and usage.db), latency percentiles.
#
#   [BENCH_NICE=-15] sh ../bench/admin/run.sh [ACCOUNTS [DAYS [SECONDS]]]
#   (from the build folder)
#
# ACCOUNTS (default 100000) accounts, each with DAYS (default 90) days of
# hourly rows (one key an account; an 'allowed' row every hour and a
# 'rate_limited' row every 10th hour: 1.1 rows an hour), written straight
# into keygate_usage_hour with sqlite3 (in the table's key order, the
# indexes built after).  The answer of a 7-day query holds 168 buckets.  The operator
# key's plan has its limits raised (the shipped admin plan's 20/s would
# answer 429: this measures the route, not the limiter).  Results:
# bench/admin/README.md.
set -eu
B=$(pwd)
S=$(cd "$(dirname "$0")/../.." && pwd)
ACCOUNTS=${1:-100000}
DAYS=${2:-90}
SECS=${3:-20}
KEYGATE="$B/tools/keygate"
KEYGATED="$B/tools/keygated"
for p in "$KEYGATE" "$KEYGATED"; do [ -x "$p" ] || { echo "build first: $p"; exit 1; }; done
command -v node >/dev/null && command -v sqlite3 >/dev/null || { echo "node and sqlite3 are needed"; exit 1; }

# BENCH_DATA=DIR keeps the generated stores there and reuses them when
# they were made for the same ACCOUNTS and DAYS (writing 100,000 x 90
# days takes long): only the measurement runs again.
if [ -n "${BENCH_DATA:-}" ]; then
    T=$BENCH_DATA
    mkdir -p "$T"
else
    T=$(mktemp -d "${TMPDIR:-/tmp}/kg-bench-admin.XXXXXX")
fi
KGD_PID=
cleanup() {
    [ -n "$KGD_PID" ] && kill "$KGD_PID" 2>/dev/null
    wait 2>/dev/null
    [ -n "${BENCH_DATA:-}" ] || rm -rf "$T"
}
trap cleanup EXIT INT TERM
export KEYGATE_STATE_DIR=$T KEYGATE_PLUGIN_PATH=$B/plugins
# The shipped policy; the admin plan's limits out of the way.
sed -e 's/{name: burst, count: 20, window: 1s, burst: 200}/{name: burst, count: 1000000, window: 1s, burst: 1000000}/' \
    -e 's/{name: hour, count: 20000, window: 1h}/{name: hour, count: 1000000000, window: 1h}/' \
    "$S/conf/keygate.yaml" >"$T/policy.yaml"
grep -q 'count: 1000000, window: 1s' "$T/policy.yaml" || { echo "the admin plan's limits were not found"; exit 1; }
# Hourly rows kept for a year: the store's retention (90 days by default)
# would otherwise delete the oldest hours of a reused data set while the
# route is measured (a DELETE among 20 million rows, on the 2 cores).
awk '{ print } /^    busy_timeout: 2s$/ && u { print "    retention: {hour: 365d}"; u = 0 } /^usage:/ { u = 1 }' \
    "$T/policy.yaml" >"$T/policy.tmp" && mv "$T/policy.tmp" "$T/policy.yaml"
grep -q 'retention: {hour: 365d}' "$T/policy.yaml" || { echo "the usage section was not found"; exit 1; }
KG="$KEYGATE --config $T/policy.yaml"
MADE="$ACCOUNTS accounts, $DAYS days"
if [ -f "$T/made" ] && [ "$(cat "$T/made")" = "$MADE" ]; then
    echo "reusing the stores in $T ($MADE)"
    OPS=$(cat "$T/ops.key")
else
rm -f "$T"/keys.db* "$T"/usage.db* "$T/made"
$KG db migrate >/dev/null
OPS=$($KG key create --plan admin --permission admin --name bench 2>/dev/null)
# the usage store makes its tables when it is first opened
$KG usage top >/dev/null 2>&1 || true
[ -f "$T/usage.db" ] || { echo "no usage.db"; exit 1; }

NOW=$(date +%s)
END=$((NOW / 3600 * 3600))
START=$((END - DAYS * 86400))
t0=$(date +%s)
echo "writing $ACCOUNTS accounts and $DAYS days of hourly rows..."
sqlite3 "$T/keys.db" >/dev/null <<EOF
PRAGMA journal_mode = WAL;
BEGIN;
WITH RECURSIVE n(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM n WHERE i + 1 < $ACCOUNTS)
INSERT INTO keygate_accounts (id, name, plan, created_at, updated_at)
SELECT printf('acct_b%07d', i), printf('bench %d', i), 'pro', $START, $START FROM n;
COMMIT;
EOF
# usage.db's keygate_usage_hour is keyed by (account_id, start, key_id,
# code) (conf/sql/007_usage_by_account.sqlite.sql): the rows are written
# in that order (accounts outer, hours inner: CROSS JOIN keeps the
# order), which appends to the B-tree, with its two indexes dropped and
# built after (a sort each), no journal (a bench set: a crash means
# writing it again) and the sorter's temporary files next to the set,
# not in /tmp.
bulk() {
    { echo "PRAGMA journal_mode = OFF; PRAGMA synchronous = OFF;"
      echo "PRAGMA cache_size = -2000000; PRAGMA threads = 2;"
      cat; } | SQLITE_TMPDIR=$T sqlite3 "$T/usage.db" >/dev/null
}
t1=$(date +%s)
bulk <<EOF
DROP INDEX keygate_usage_hour_start;
DROP INDEX keygate_usage_hour_key;
BEGIN;
WITH RECURSIVE n(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM n WHERE i + 1 < $ACCOUNTS),
     h(t) AS (SELECT $START UNION ALL SELECT t + 3600 FROM h WHERE t + 3600 < $END)
INSERT INTO keygate_usage_hour (start, account_id, key_id, code, count)
SELECT t, printf('acct_b%07d', i), printf('k_b%07d', i), c.code, c.cnt
FROM n CROSS JOIN h CROSS JOIN (SELECT 'allowed' AS code, 40 AS cnt UNION ALL SELECT 'rate_limited', 3) AS c
WHERE c.code = 'allowed' OR (t / 3600 + i) % 10 = 0;
COMMIT;
EOF
t2=$(date +%s)
bulk <<EOF
CREATE INDEX keygate_usage_hour_start ON keygate_usage_hour (start);
CREATE INDEX keygate_usage_hour_key ON keygate_usage_hour (key_id, start);
PRAGMA analysis_limit = 1000;
ANALYZE;
PRAGMA journal_mode = WAL;
EOF
t3=$(date +%s)
echo "rows written in $((t2 - t1)) s, indexes built in $((t3 - t2)) s"
echo "written in $(( $(date +%s) - t0 )) s"
printf '%s\n' "$OPS" >"$T/ops.key"
printf '%s\n' "$MADE" >"$T/made"
fi
# (counting reads a whole index: not when the page cache is to stay cold)
if [ -z "${BENCH_COLD:-}" ]; then
    ROWS=$(sqlite3 "$T/usage.db" "SELECT count(*) FROM keygate_usage_hour")
    echo "rows: $ROWS in keygate_usage_hour, usage.db $(du -h "$T/usage.db" | cut -f1)"
fi

# BENCH_NICE=-15 (root) on a shared machine: keygated and wrk ahead of the rest.
NICE=
[ -n "${BENCH_NICE:-}" ] && NICE="nice -n $BENCH_NICE"
: >"$T/keygated.err"
$NICE "$KEYGATED" --config "$T/policy.yaml" --listen 127.0.0.1:0 --admin-listen 127.0.0.1:0 \
    --access-log off 2>"$T/keygated.err" &
KGD_PID=$!
AP=
i=0
while [ -z "$AP" ] && [ $i -lt 200 ]; do
    AP=$(sed -n 's/.*admin API listener on 127\.0\.0\.1:\([0-9]*\).*/\1/p' "$T/keygated.err" | head -1)
    sleep 0.05; i=$((i + 1))
done
[ -n "$AP" ] || { cat "$T/keygated.err"; exit 1; }
URL="http://127.0.0.1:$AP"
n=$(curl -s -H "Authorization: Bearer $OPS" "$URL/api/v1/accounts/acct_b0000001/usage?by=hour&since=7d" |
    grep -o '"start"' | wc -l)
echo "one answer: $n buckets (7 days by hour: 168 or 169)"

# Warm: the rows the route reads (every account's last 8 days) read
# once into the page cache (a server's working set: the whole file may
# not fit in RAM), and 5 s of the same requests not counted.
# BENCH_COLD=1 skips both (drop the page cache first to measure a cold
# store: echo 3 > /proc/sys/vm/drop_caches).
if [ -z "${BENCH_COLD:-}" ]; then
    sqlite3 "$T/usage.db" "WITH RECURSIVE n(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM n
        WHERE i + 1 < $ACCOUNTS) SELECT count(*) FROM n, keygate_usage_hour u
        WHERE u.account_id = printf('acct_b%07d', n.i) AND u.start >= $(( $(date +%s) - 8 * 86400 ))" >/dev/null
    node "$S/bench/admin/client.js" "$URL" "$OPS" "$ACCOUNTS" 5 >/dev/null
fi
echo "one client, one request at a time, ${SECS} s, random accounts:"
$NICE node "$S/bench/admin/client.js" "$URL" "$OPS" "$ACCOUNTS" "$SECS"
