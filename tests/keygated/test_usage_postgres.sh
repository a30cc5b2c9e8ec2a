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
flushes() {
    curl -s "$1/metrics" | sed -n 's/^keygated_usage_flushes_total{result="ok"} //p'
}
# await_flush URL N: wait (up to 10 s) until URL has flushed more than N times.
await_flush() {
    i=0
    while [ "$(flushes "$1")" -le "$2" ] && [ $i -lt 100 ]; do
        sleep 0.1
        i=$((i + 1))
    done
    [ "$(flushes "$1")" -gt "$2" ]
}
# wave SHARE: the requests below, SHARE of each (two waves make the whole),
# all six clients at once.
wave() {
    hammer "$U1" "$KA1" $((150 / 2)) "$T/s1.$1" &
    h1=$!
    hammer "$U2" "$KA1" $((150 / 2)) "$T/s2.$1" &
    h2=$!
    hammer "$U2" "$KB1" $((120 / 2)) "$T/s3.$1" &
    h3=$!
    hammer "$U1" "$KA2" $((60 / 2)) "$T/s4.$1" &
    h4=$!
    hammer "$U1" whizo_notakey $((20 / 2)) "$T/s5.$1" &
    h5=$!
    hammer "$U2" whizo_notakey $((26 / 2)) "$T/s6.$1" &
    h6=$!
    wait $h1 $h2 $h3 $h4 $h5 $h6
}
# Two waves, each followed by a flush of both instances (flush_interval
# 1s): the second wave's requests are served while the first wave's
# counts are being written, whatever the machine's speed.
for w in 1 2; do
    f1=$(flushes "$U1"); f2=$(flushes "$U2")
    wave $w
    await_flush "$U1" "${f1:-0}" && await_flush "$U2" "${f2:-0}" \
        && ok "wave $w: both instances flushed after it" \
        || bad "wave $w: flushes $(flushes "$U1") / $(flushes "$U2")"
done
for i in 1 2 3 4 5 6; do cat "$T/s$i.1" "$T/s$i.2" >"$T/s$i"; done
ok200() { cat "$@" | grep -c '^200$'; }
a1=$(ok200 "$T/s1" "$T/s2"); a2=$(ok200 "$T/s4"); b1=$(ok200 "$T/s3")
u=$(cat "$T/s5" "$T/s6" | grep -c '^401$')
[ "$a1" -eq 300 ] && [ "$a2" -eq 60 ] && [ "$b1" -eq 120 ] && [ "$u" -eq 46 ] \
    && ok "both instances answered: 300 + 60 + 120 allowed, 46 x 401" \
    || bad "answers: a1 $a1 a2 $a2 b1 $b1 401s $u"
for u in $U1 $U2; do
    n=$(flushes "$u")
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
    [ "$n" = 526 ] && ok "keygate_usage_$t: 526 decisions in all" || bad "keygate_usage_$t: $n, not 526"
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
grep -q '"unauthorized":46' "$T/all.json" && ok "usage of everything: 46 unauthorized" \
    || bad "usage of everything: $(cat "$T/all.json")"
n=$(q "SELECT count(*) FROM keygate_usage_events WHERE status = 401")
[ "$n" = 46 ] && ok "46 events of the 401s (every denial)" || bad "events: $n"
n=$(q "SELECT count(DISTINCT id) FROM keygate_usage_events")
[ "$n" = 46 ] && ok "event ids distinct across the instances" || bad "distinct ids: $n"
finish
