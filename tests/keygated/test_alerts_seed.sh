#!/bin/sh
# The spike rule's baseline survives a restart (docs/alerts.md "spike",
# issue 20): seven days of an account's rows are in the usage store (4
# requests an hour), written before keygated ran, as a previous one
# would have; 21 requests in the current hour (over 5 x 4) under a
# keygated stopped before it read their minute; the next keygated seeds
# its history from the store at start and reads the last minutes back:
# one spike alert, with a seven-day baseline (and a denials burst of the
# same minutes).  Restarted again, it seeds again and writes nothing
# twice.
. "${KEYGATE_SRCDIR:-.}/tests/keygated/lib.sh"

command -v sqlite3 >/dev/null || { echo "the sqlite3 command is needed"; exit 77; }
[ -f "$B/plugins/.libs/sql.so" ] || { echo "the sql plugin was not built"; exit 77; }

# The 21 requests must fall in one hour: a run near an hour's end waits
# for the next one.
left=$(( 3600 - $(date -u +%s) % 3600 ))
[ "$left" -lt 240 ] && sleep $((left + 2))
POLICY=$T/policy.yaml
cat >"$POLICY" <<YAML
credential:
  - {module: bearer, control: optional}
keystore:
  - {module: file, control: required, options: {path: keys.yaml}}
plans:
  free: {}
usage:
  module: sql
  options: {url: "sqlite://$T/usage.db"}
  flush_interval: 1s
notifiers:
  audit:
    module: log
    options: {path: alerts.jsonl}
alerts:
  - {name: spike, when: {spike: {factor: 5, over: 1h, baseline: 7d, min_requests: 20}}, notify: [audit]}
  - {name: denials, when: {denied: {codes: [unauthorized], count: 5, within: 5m}}, notify: [audit]}
YAML

K=$(new_key one free)
ID=$(key_id_of "$K")
A=$("$KEYGATE" --config "$POLICY" key list | awk -v k="$ID" '$1 == k { print $7 }')
[ -n "$ID" ] && [ -n "$A" ] && ok "a key and its account" || bad "key $ID, account $A"

# The history, as the usage store keeps it: loading the policy made the
# tables; 4 requests in each of the 168 hours before this one, in the
# hour's first minute (a minute row, and its hour row).
"$KEYGATE" --config "$POLICY" alerts list >/dev/null || bad "alerts list"
H0=$(( $(date -u +%s) / 3600 * 3600 ))
{
    echo "BEGIN;"
    h=1
    while [ $h -le 168 ]; do
        for t in minute hour; do
            echo "INSERT INTO keygate_usage_$t VALUES ($((H0 - h * 3600)), '$A', '$ID', 'allowed', 4);"
        done
        h=$((h + 1))
    done
    echo "COMMIT;"
} | sqlite3 "$T/usage.db" && ok "168 hours in the store" || bad "sqlite3 insert"

# spend N: N checks with the key.
spend() {
    i=0
    while [ $i -lt "$1" ]; do
        curl -s -o /dev/null --max-time 5 -H "Authorization: Bearer $K" "$KGD/check"
        i=$((i + 1))
    done
}
fired() {
    cat "$T/alerts.jsonl" 2>/dev/null | grep -c '"type":"alert.fired".*"rule":"spike"'
}

# The requests are made under a first keygated, stopped before their
# minute is over (and read); one that starts then reads the last minutes
# back (docs/alerts.md "Running it"), on the baseline it seeded.
while [ $(( $(date -u +%s) % 60 )) -gt 40 ]; do sleep 1; done
start_keygated --alerts-interval 1
spend 21
# And six requests with a key nobody has: a denials burst, read back the
# same way (in the first round, fed to the rules of the policy: before
# they were bound first, that round's rows were dropped).
i=0
while [ $i -lt 6 ]; do
    curl -s -o /dev/null --max-time 5 -H "Authorization: Bearer whizo_0000000000000000000000000000000000000" "$KGD/check"
    i=$((i + 1))
done
burst=$(( $(date -u +%s) / 60 ))
sleep 2
stop_keygated
[ ! -s "$T/alerts.jsonl" ] && ok "the first keygated stopped before it saw the spike or the denials" ||
    bad "seen already: $(cat "$T/alerts.jsonl")"
# The next keygated starts once their minute is over and flushed, so
# that its first round reads it.
while [ $(( $(date -u +%s) / 60 )) -eq "$burst" ]; do sleep 1; done
sleep 4
start_keygated --alerts-interval 1
wait_log "spike baselines seeded from the usage store: 168 rows" &&
    ok "keygated seeded the spike history: $(grep -o 'seeded .*' "$T/keygated.err")" ||
    bad "not seeded: $(cat "$T/keygated.err")"
# Seen once the requests' minute is over, flushed and read (up to ~70 s).
wait_for 2400 grep -qs '"rule":"spike"' "$T/alerts.jsonl" &&
    ok "21 requests over a baseline of 4: the spike fired" ||
    bad "no spike alert: $(cat "$T/keygated.err"; cat "$T/alerts.jsonl" 2>/dev/null)"
wait_for 200 grep -qs '"rule":"denials"' "$T/alerts.jsonl" &&
    ok "and the denials burst, from the minutes read back" ||
    bad "no denials alert: $(cat "$T/alerts.jsonl" 2>/dev/null)"
grep -q "\"account\":\"$A\".*\"requests\":21,\"baseline\":4.0,\"factor\":5,\"over\":3600,\"baseline_days\":7" "$T/alerts.jsonl" &&
    ok "its figures: 21 over 4.0, seven days of baseline" || bad "alerts.jsonl: $(cat "$T/alerts.jsonl")"
stop_keygated

# Restarted: seeded again (the 168 hours and this hour's minutes), the
# same spike found again under the same message id: nothing new.
start_keygated --alerts-interval 1
wait_log "spike baselines seeded from the usage store" && ok "seeded again at the restart" ||
    bad "not seeded again: $(cat "$T/keygated.err")"
sleep 4
[ "$(fired)" -eq 1 ] && ok "the spike is said once across the restart" ||
    bad "$(fired) spike alerts: $(cat "$T/alerts.jsonl")"
"$KEYGATE" --config "$POLICY" alerts history | grep -c ' spike ' | grep -q '^1$' &&
    ok "one spike entry in the outbox" || bad "history: $("$KEYGATE" --config "$POLICY" alerts history)"
stop_keygated
finish
