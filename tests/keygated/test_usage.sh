#!/bin/sh
# Usage metering through a real keygated on the shipped policy
# (docs/usage.md): 12 requests of a Free account (10 allowed, 2 x 429),
# then SIGTERM: `keygate usage --account A --json` shows allowed 10 and
# rate_limited 2 (the flush at exit: nothing counted is lost), `keygate
# logs --account A --status 429` the two denials; usage top; the CLI's
# bad input (exit 2); /metrics' usage counters without a per-key label;
# with a flush_interval of an hour, the flush at SIGHUP (into the old
# policy's store) and at exit; an unwritable usage store refused at load
# with file:line:column.
. "${KEYGATE_SRCDIR:-.}/tests/keygated/lib.sh"

POLICY=$S/conf/keygate.yaml
KG="$KEYGATE --config $POLICY"

# check KEY: one /check, its lease (if any) released at once; $CODE.
check() {
    req -H "Authorization: Bearer $1" "$KGD/check"
    l=$(header_value X-Keygate-Lease)
    [ -z "$l" ] || curl -s -o /dev/null -X DELETE "$KGD/leases/$l"
}

A=$($KG account create --name Acme --plan free --external-id cus_usage 2>/dev/null)
K=$($KG key create --account "$A" --name a1 2>/dev/null)
KID=$(key_id_of "$K")
[ -n "$A" ] && [ -n "$K" ] && [ -n "$KID" ] && ok "a Free account and its key" \
    || bad "account $A key $K id $KID"
start_keygated

allowed=0; limited=0
i=0
while [ $i -lt 12 ]; do
    check "$K"
    [ "$CODE" = 200 ] && allowed=$((allowed + 1))
    [ "$CODE" = 429 ] && limited=$((limited + 1))
    i=$((i + 1))
done
[ $allowed -eq 10 ] && [ $limited -eq 2 ] && ok "12 requests: 10 allowed, 2 x 429" \
    || bad "12 requests: $allowed allowed, $limited limited"
req -H "Authorization: Bearer whizo_notakey" -H "X-Original-Method: POST" \
    -H "X-Original-URI: /v1/jobs?page=2" "$KGD/check"
[ "$CODE" = 401 ] && ok "an unknown key: 401" || bad "unknown key: $CODE"
stop_keygated

# ---- what was counted --------------------------------------------------------
$KG usage --account cus_usage --json >"$T/u.json" 2>"$T/u.err"
rc=$?
[ $rc -eq 0 ] && grep -q '"total":{"allowed":10,"denied":{"rate_limited":2}}' "$T/u.json" \
    && ok "usage --account (external id) --json: allowed 10, rate_limited 2" \
    || bad "usage --json (rc $rc): $(cat "$T/u.json" "$T/u.err")"
grep -q "^{\"account\":\"$A\",\"key\":null,\"by\":\"hour\",\"buckets\":\[{\"start\":\"[0-9-]*T[0-9]*:00:00Z\",\"allowed\":10,\"denied\":{\"rate_limited\":2}}\]," "$T/u.json" \
    && ok "usage --json: the issue's shape, one hour bucket" || bad "usage --json shape: $(cat "$T/u.json")"
$KG usage --key "$KID" --by minute --since 1h >"$T/u.txt" 2>&1
grep -q "^total  *10  *2  rate_limited 2$" "$T/u.txt" \
    && ok "usage --key --by minute: a table and its total" || bad "usage table: $(cat "$T/u.txt")"
$KG usage --json >"$T/all.json" 2>&1
grep -q '"unauthorized":1' "$T/all.json" && ok "usage of everything: the unknown key's 401 under no account" \
    || bad "usage of everything: $(cat "$T/all.json")"

$KG logs --account cus_usage --status 429 >"$T/l.txt" 2>&1
n=$(grep -c ' 429 rate_limited ' "$T/l.txt")
[ "$n" -eq 2 ] && [ "$(wc -l <"$T/l.txt")" -eq 2 ] && ok "logs --account --status 429: the two denials" \
    || bad "logs 429: $(cat "$T/l.txt")"
grep -q "$(printf '%.8s' "$K")" "$T/l.txt" && ! grep -q -- "$K" "$T/l.txt" \
    && ok "logs show the key's display prefix, never the key" || bad "logs and the key: $(cat "$T/l.txt")"
$KG logs --status 4xx --code unauthorized --json >"$T/l.json" 2>&1
grep -q '^{"items":\[{"id":[0-9]*,"time":"[0-9T:.-]*Z","account":null,"key_id":null,"key_prefix":null,"client":"127.0.0.1","method":"POST","path":"/v1/jobs","status":401,"code":"unauthorized","decided_by":"[^"]*"}\],"next_cursor":null}$' "$T/l.json" \
    && ok "logs --status 4xx --code --json: the 401 with the original method and path" || bad "logs --json: $(cat "$T/l.json")"
timeout -s INT 3 $KG logs --account cus_usage --follow >"$T/f.txt" 2>&1
[ "$(grep -c ' 429 rate_limited ' "$T/f.txt")" -eq 2 ] && ok "logs --follow: the denials so far, until interrupted" \
    || bad "logs --follow: $(cat "$T/f.txt")"
$KG usage top --by account --json >"$T/top.json" 2>&1
grep -q "{\"account\":\"$A\",\"key\":null,\"allowed\":10,\"denied\":2,\"total\":12}" "$T/top.json" \
    && ok "usage top --by account" || bad "usage top: $(cat "$T/top.json")"

# keygate check counts too (its own process: its own limiter state).
$KG check --header "Authorization: Bearer $K" >/dev/null 2>&1
$KG usage --account "$A" --json | grep -q '"total":{"allowed":11,"denied":{"rate_limited":2}}' \
    && ok "keygate check is counted" || bad "keygate check: $($KG usage --account "$A" --json)"

# ---- bad input: a clear error, exit 2 ---------------------------------------
bad_input() {  # DESC PATTERN ARGS...
    d=$1; p=$2; shift 2
    $KG "$@" >"$T/o" 2>"$T/e"
    rc=$?
    [ $rc -eq 2 ] && grep -q -- "$p" "$T/e" && ok "$d: exit 2" || bad "$d: rc $rc: $(cat "$T/o" "$T/e")"
}
bad_input "usage --since soon" "since 'soon'" usage --since soon
bad_input "usage --by week" "by 'week'" usage --by week
bad_input "usage --account unknown" "no account 'nobody'" usage --account nobody
bad_input "usage --key unknown" "no key 'k_nope'" usage --key k_nope
bad_input "usage --account and --key" "not both" usage --account "$A" --key "$KID"
bad_input "usage top --by plan" "by 'plan'" usage top --by plan
bad_input "logs --status 42" "status '42'" logs --status 42
bad_input "logs --code nope" "code 'nope'" logs --code nope
bad_input "logs --since yesterday" "since 'yesterday'" logs --since yesterday
bad_input "usage top --account" "does not take --account" usage top --account "$A"

# ---- flushes at reload and at exit, /metrics -------------------------------
POLICY=$T/hourly.yaml
sed 's/^  flush_interval: 5s$/  flush_interval: 1h/' "$S/conf/keygate.yaml" >"$POLICY"
grep -q 'flush_interval: 1h' "$POLICY" || bad "no flush_interval in the shipped policy"
KG="$KEYGATE --config $POLICY"
K2=$($KG key create --name b1 --plan pro 2>/dev/null)
start_keygated
for i in 1 2 3; do check "$K2"; done
before=$($KG usage --json | sed -n 's/.*"total":{"allowed":\([0-9]*\).*/\1/p')
kill -HUP "$KGD_PID"
wait_log "reloaded policy"
after=$($KG usage --json | sed -n 's/.*"total":{"allowed":\([0-9]*\).*/\1/p')
[ "$after" -eq $((before + 3)) ] && ok "SIGHUP flushes what was counted (allowed $before, then $after)" \
    || bad "reload flush: allowed $before then $after; $(cat "$T/keygated.err")"
for i in 1 2; do check "$K2"; done
req "$KGD/metrics"
grep -q '^keygated_usage_flushes_total{result="ok"} [1-9]' "$T/b" \
    && grep -q '^keygated_usage_written_total{what="rows"} [1-9]' "$T/b" \
    && grep -q '^keygated_usage_pending{what="rows"} [1-9]' "$T/b" \
    && grep -q '^keygated_usage_dropped_total{what="rows"} 0$' "$T/b" \
    && grep -q '^keygated_usage_flush_duration_seconds [0-9.]*$' "$T/b" \
    && ok "/metrics: usage flushes, rows written, pending, drops, flush duration" \
    || bad "/metrics: $(grep usage "$T/b")"
K2ID=$(key_id_of "$K2")
if grep -q -e "$K2ID" -e "$A" "$T/b"; then bad "/metrics names a key or an account"; else ok "/metrics: no per-key or per-account label"; fi
stop_keygated
after2=$($KG usage --json | sed -n 's/.*"total":{"allowed":\([0-9]*\).*/\1/p')
[ "$after2" -eq $((after + 2)) ] && ok "SIGTERM flushes the rest (allowed $after2)" \
    || bad "exit flush: allowed $after then $after2"

# ---- a usage store that cannot be written: refused at load ------------------
sed 's|^    path: ${KEYGATE_STATE_DIR:-/var/lib/keygate}/usage.db$|    path: /dev/null/usage.db|' \
    "$S/conf/keygate.yaml" >"$T/bad.yaml"
line=$(grep -n '/dev/null/usage.db' "$T/bad.yaml" | cut -d: -f1)
$KEYGATE --config "$T/bad.yaml" policy check >"$T/o" 2>&1
rc=$?
[ $rc -eq 2 ] && grep -q "bad.yaml:$line:[0-9]*: .*usage.db" "$T/o" \
    && ok "an unwritable usage store: a policy error at $line:column" || bad "unwritable store: rc $rc $(cat "$T/o")"
"$KEYGATED" --config "$T/bad.yaml" --check-config >"$T/o" 2>&1
[ $? -eq 2 ] && grep -q "bad.yaml:$line:" "$T/o" && ok "keygated --check-config refuses it too" \
    || bad "keygated --check-config: $(cat "$T/o")"
finish
