#!/bin/sh
# Two keygated instances metering into one PostgreSQL (docs/sql.md
# "Usage"): requests spread over both while each flushes every second,
# then SIGTERM (the last flushes): the totals in the store are exactly
# the decisions both made, per account and per key, in the minute, hour
# and day tables alike, and every denial is an event.
. "${KEYGATE_SRCDIR:-.}/tests/keygated/lib.sh"
. "$S/tests/integration/pg_env.sh"
pg_skip_unless_installed
command -v runuser >/dev/null || [ "$(id -u)" -ne 0 ] || { echo "SKIP: runuser"; exit 77; }

trap 'pg_stop; lib_cleanup' EXIT
pg_start || { bad "PostgreSQL did not start"; finish; }
$PG_PSQL -d postgres -c "CREATE DATABASE keygate OWNER keygate" >/dev/null \
    || { bad "createdb"; finish; }
export KG_TEST_PG_PASSWORD="$PG_PASSWORD"

POLICY=$T/policy.yaml
cat >"$POLICY" <<EOP
version: 1
key_prefix: whizo
credential: [{module: bearer}]
keystore:
  - module: sql
    cache: {ttl: 60s}
    options:
      driver: postgresql
      conninfo: "host=127.0.0.1 port=$PG_PORT dbname=keygate user=keygate"
      password: \${KG_TEST_PG_PASSWORD}
      sslmode: disable
plans:
  free: {}
usage:
  module: sql
  options:
    url: "postgresql://keygate@127.0.0.1:$PG_PORT/keygate?sslmode=disable"
    password: \${KG_TEST_PG_PASSWORD}
  flush_interval: 1s
  sample: 0%
EOP
KG="$KEYGATE --config $POLICY"
out=$($KG db migrate 2>&1) && ok "db migrate: $out" || bad "db migrate: $out"
A=$($KG account create --name A --plan free 2>/dev/null)
B=$($KG account create --name B --plan free 2>/dev/null)
KA1=$($KG key create --account "$A" --name a1 2>/dev/null)
KA2=$($KG key create --account "$A" --name a2 2>/dev/null)
KB1=$($KG key create --account "$B" --name b1 2>/dev/null)
[ -n "$KA1" ] && [ -n "$KA2" ] && [ -n "$KB1" ] && ok "two accounts, three keys" \
    || bad "accounts $A $B keys $KA1 $KA2 $KB1"

start_keygated
P1=$KGD_PID; U1=$KGD
launch_keygated --config "$POLICY" --listen 127.0.0.1:0 --access-log "$T/access2.log"
P2=$KGD_PID; U2=$KGD
KGD_PID=

# hammer URL KEY N OUT: N checks, one curl each; the statuses into OUT.
hammer() {
    n=0
    while [ $n -lt "$3" ]; do
        curl -s -o /dev/null -w '%{http_code}\n' -H "Authorization: Bearer $2" "$1/check"
        n=$((n + 1))
    done >"$4"
}
hammer "$U1" "$KA1" 150 "$T/s1" &
h1=$!
hammer "$U2" "$KA1" 150 "$T/s2" &
h2=$!
hammer "$U2" "$KB1" 120 "$T/s3" &
h3=$!
hammer "$U1" "$KA2" 60 "$T/s4" &
h4=$!
hammer "$U1" whizo_notakey 20 "$T/s5" &
h5=$!
hammer "$U2" whizo_notakey 25 "$T/s6" &
h6=$!
wait $h1 $h2 $h3 $h4 $h5 $h6
ok200() { cat "$@" | grep -c '^200$'; }
a1=$(ok200 "$T/s1" "$T/s2"); a2=$(ok200 "$T/s4"); b1=$(ok200 "$T/s3")
u=$(cat "$T/s5" "$T/s6" | grep -c '^401$')
[ "$a1" -eq 300 ] && [ "$a2" -eq 60 ] && [ "$b1" -eq 120 ] && [ "$u" -eq 45 ] \
    && ok "both instances answered: 300 + 60 + 120 allowed, 45 x 401" \
    || bad "answers: a1 $a1 a2 $a2 b1 $b1 401s $u"
# Both flushed while serving (flush_interval 1s: the writes of the two
# overlapped), then at exit.
for u in $U1 $U2; do
    n=$(curl -s "$u/metrics" | sed -n 's/^keygated_usage_flushes_total{result="ok"} //p')
    [ "${n:-0}" -ge 2 ] && ok "$u flushed $n times while serving" || bad "$u flushes: '$n'"
done
for p in $P1 $P2; do
    kill -TERM "$p"
    wait "$p"
    rc=$?
    [ "$rc" -eq 0 ] && ok "keygated $p exits 0 on SIGTERM" || bad "keygated $p exited $rc"
done
if grep -q -E 'AddressSanitizer|LeakSanitizer|runtime error' "$T/keygated.err"; then
    bad "sanitizer report: $(cat "$T/keygated.err")"
fi

# ---- the totals ---------------------------------------------------------------
q() { $PG_PSQL -d keygate -tAc "$1"; }
for t in minute hour day; do
    n=$(q "SELECT SUM(count) FROM keygate_usage_$t")
    [ "$n" = 525 ] && ok "keygate_usage_$t: 525 decisions in all" || bad "keygate_usage_$t: $n, not 525"
done
$KG usage --account "$A" --json >"$T/a.json" 2>&1
grep -q '"total":{"allowed":360,"denied":{}}' "$T/a.json" \
    && ok "usage --account A: 360 allowed, over both instances" || bad "usage A: $(cat "$T/a.json")"
$KG usage --account "$B" --json >"$T/b.json" 2>&1
grep -q '"total":{"allowed":120,"denied":{}}' "$T/b.json" \
    && ok "usage --account B: 120 allowed" || bad "usage B: $(cat "$T/b.json")"
KID=$(q "SELECT id FROM keygate_keys WHERE name = 'a1'")
$KG usage --key "$KID" --json >"$T/k.json" 2>&1
grep -q '"total":{"allowed":300,"denied":{}}' "$T/k.json" \
    && ok "usage --key a1: 300 allowed, 150 from each instance" || bad "usage a1: $(cat "$T/k.json")"
$KG usage --json >"$T/all.json" 2>&1
grep -q '"unauthorized":45' "$T/all.json" && ok "usage of everything: 45 unauthorized" \
    || bad "usage of everything: $(cat "$T/all.json")"
n=$(q "SELECT count(*) FROM keygate_usage_events WHERE status = 401")
[ "$n" = 45 ] && ok "45 events of the 401s (every denial)" || bad "events: $n"
n=$(q "SELECT count(DISTINCT id) FROM keygate_usage_events")
[ "$n" = 45 ] && ok "event ids distinct across the instances" || bad "distinct ids: $n"
finish
