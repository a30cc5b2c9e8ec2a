#!/bin/sh
# The audit log from the command line (issue 19, docs/audit.md): every
# change made by `keygate key` and `keygate account` (create, update,
# rotate, revoke, suspend, resume, delete) and every one refused is a
# record by cli:<user>; `keygate audit` reads them newest first, with its
# filters and cursor, as text and as JSON; neither a key nor its hash is
# ever in the log.  On the shipped policy (SQLite) and on a file store
# (JSON lines beside the key file).  Also the rotation's link in key
# show / list / --json (issue 23 item 4).
set -u
# As test_cli.sh: LeakSanitizer's tracer is off for the CLI processes.
ASAN_OPTIONS="${ASAN_OPTIONS:+$ASAN_OPTIONS:}detect_leaks=0"
export ASAN_OPTIONS
B=${KEYGATE_BUILDDIR:-.}
S=${KEYGATE_SRCDIR:-.}
BIN="$B/tools/keygate"
KEYGATE_STATE_DIR=$(mktemp -d)
export KEYGATE_STATE_DIR
T=$KEYGATE_STATE_DIR
trap 'rm -rf "$T"' EXIT
unset KEYGATE_CONFIG
. "$S/tests/lib.sh"   # ok, bad, expect, json_field, finish
ME=$(id -un)

expect "audit --help" 0 "usage: keygate audit" -- env KEYGATE_CONFIG=/nonexistent $BIN audit --help

# run STORE: the sequence on a policy; $1 names it, $KG runs keygate on it,
# $DUMP prints what the store keeps of its log.
run() {
    store=$1
    expect "$store: an empty log" 0 "^ID  *TIME" -- $KG audit
    K1=$($KG --json key create --name one --plan free 2>/dev/null)
    KEY1=$(printf '%s' "$K1" | json_field key)
    ID1=$(printf '%s' "$K1" | json_field id)
    ACC=$(printf '%s' "$K1" | json_field account)
    R=$($KG --json key rotate "$ID1" --grace 1h 2>/dev/null)
    KEY2=$(printf '%s' "$R" | json_field key)
    ID2=$(printf '%s' "$R" | json_field id)
    $KG key revoke "$ID2" >/dev/null 2>&1 || bad "$store: revoke"
    # refused: an unknown key, an unknown plan
    $KG key revoke k_0000000000000000 >/dev/null 2>&1 && bad "$store: revoke of an unknown key worked"
    $KG account update "$ACC" --plan gold >/dev/null 2>&1 && bad "$store: an unknown plan was taken"
    $KG account suspend "$ACC" >/dev/null 2>&1 || bad "$store: suspend"
    $KG account resume "$ACC" >/dev/null 2>&1 || bad "$store: resume"
    A2=$($KG account create --name Two --plan pro 2>/dev/null)
    $KG account delete "$A2" >/dev/null 2>&1 || bad "$store: account delete"

    out=$($KG audit --json)
    lines=$(printf '%s\n' "$out" | grep -c '"action"')
    [ "$lines" -eq 10 ] && ok "$store: ten records" || bad "$store: $lines records: $out"
    first=$(printf '%s\n' "$out" | grep '"action"' | head -1)
    printf '%s' "$first" | grep -q "\"action\":\"account.delete\",\"target\":\"$A2\"" &&
        ok "$store: newest first" || bad "$store: first is $first"
    printf '%s\n' "$out" | grep -q "\"actor\":\"cli:$ME\",\"actor_key_id\":\"\"" &&
        ok "$store: actor cli:$ME" || bad "$store: actor: $out"
    printf '%s\n' "$out" | grep "\"action\":\"key.create\"" | grep -q "\"name\":{\"before\":null,\"after\":\"one\"}" &&
        ok "$store: create: the fields after" || bad "$store: create: $out"
    printf '%s\n' "$out" | grep "\"action\":\"account.create\",\"target\":\"$ACC\"" | grep -q "\"plan\":{\"before\":null,\"after\":\"free\"}" &&
        ok "$store: the key's account of its own, created" || bad "$store: account of its own: $out"
    printf '%s\n' "$out" | grep "\"action\":\"key.rotate\"" | grep -q "\"replaced_by\":{\"before\":null,\"after\":\"$ID2\"}" &&
        ok "$store: rotate: replaced_by, before and after" || bad "$store: rotate: $out"
    printf '%s\n' "$out" | grep "\"action\":\"key.revoke\",\"target\":\"$ID2\"" |
        grep -q '"status":{"before":"active","after":"revoked"}},"result":"ok"' &&
        ok "$store: revoke: the status" || bad "$store: revoke: $out"
    printf '%s\n' "$out" | grep -q '"action":"key.revoke","target":"k_0000000000000000".*"result":"not_found"' &&
        ok "$store: a refused revoke, not_found" || bad "$store: refused revoke: $out"
    printf '%s\n' "$out" | grep '"action":"account.update"' |
        grep -q '"plan":{"before":"free","after":"gold"}},"result":"invalid"' &&
        ok "$store: a refused update, with what it asked" || bad "$store: refused update: $out"
    printf '%s\n' "$out" | grep -q '"action":"account.suspend".*"status":{"before":"active","after":"suspended"}' &&
    printf '%s\n' "$out" | grep -q '"action":"account.resume".*"status":{"before":"suspended","after":"active"}' &&
        ok "$store: suspend and resume" || bad "$store: suspend/resume: $out"

    # filters and the cursor
    expect "$store: --target" 0 "key.rotate" -- $KG audit --target "$ID1"
    n1=$($KG audit --json --target "$ID1" | grep -c '"action"')
    [ "$n1" -eq 2 ] && ok "$store: --target: 2" || bad "$store: --target gave $n1"
    n1=$($KG audit --json --account "$ACC" | grep -c '"action"')
    [ "$n1" -eq 7 ] && ok "$store: --account: 7" || bad "$store: --account gave $n1"
    n1=$($KG audit --json --action key.revoke | grep -c '"action"')
    [ "$n1" -eq 2 ] && ok "$store: --action: 2" || bad "$store: --action gave $n1"
    n1=$($KG audit --json --since 1h | grep -c '"action"')
    [ "$n1" -eq 10 ] && ok "$store: --since 1h: all" || bad "$store: --since 1h gave $n1"
    n1=$($KG audit --json --until 2020-01-01 | grep -c '"action"')
    [ "$n1" -eq 0 ] && ok "$store: --until 2020-01-01: none" || bad "$store: --until gave $n1"
    n1=$($KG audit --json --since 2099-01-01 | grep -c '"action"')
    [ "$n1" -eq 0 ] && ok "$store: --since 2099-01-01: none" || bad "$store: --since gave $n1"
    expect "$store: --limit says where the next page starts" 0 "next page is --before" -- $KG audit --limit 4
    last=$($KG audit --json --limit 4 | sed -n 's/^.*{"id":\([0-9]*\),.*/\1/p' | tail -1)
    page2=$($KG audit --json --limit 4 --before "$last")
    n1=$(printf '%s\n' "$page2" | grep -c '"action"')
    top=$(printf '%s\n' "$page2" | sed -n 's/^.*{"id":\([0-9]*\),.*/\1/p' | head -1)
    [ "$n1" -eq 4 ] && [ "$top" -lt "$last" ] && ok "$store: --before: the next page" ||
        bad "$store: page 2 after $last: $page2"
    expect "$store: a bad --since" 2 "not a duration" -- $KG audit --since yesterday
    expect "$store: a bad --limit" 2 "not a number" -- $KG audit --limit -3

    # neither key nor hash anywhere in the log
    h1=$(printf '%s' "$KEY1" | sha256sum | cut -d' ' -f1)
    h2=$(printf '%s' "$KEY2" | sha256sum | cut -d' ' -f1)
    log=$($DUMP)
    printf '%s\n' "$log" | grep -q "key.rotate" || bad "$store: the dump is not the log: $log"
    if printf '%s\n' "$log" | grep -q -e "$KEY1" -e "$KEY2" -e "$h1" -e "$h2"; then
        bad "$store: the log holds a key or its hash"
    else
        ok "$store: neither key nor hash in the log"
    fi

    # the rotation's link (issue 23 item 4); ID2 is revoked
    expect "$store: key show: rotating" 0 "^status: *rotating" -- $KG key show "$ID1"
    expect "$store: key show: replaced by" 0 "^replaced by: $ID2" -- $KG key show "$ID1"
    expect "$store: key show: replaces" 0 "^replaces: *$ID1" -- $KG key show "$ID2"
    expect "$store: key list: linked" 0 "rotating.*(replaced by $ID2)" -- $KG key list
    expect "$store: --json: status and link" 0 "\"status\":\"rotating\",\"replaced_by\":\"$ID2\"" -- $KG key show --json "$ID1"
    expect "$store: --json: the new key names the old" 0 "\"status\":\"revoked\",\"replaces\":\"$ID1\"" -- $KG key show --json "$ID2"
}

# ---- the shipped policy: SQLite ------------------------------------------
KG="$BIN --config $S/conf/keygate.yaml"
$KG db migrate >/dev/null 2>&1 || bad "db migrate"
if command -v sqlite3 >/dev/null 2>&1; then
    dump_sqlite() { sqlite3 "$T/keys.db" 'SELECT * FROM keygate_audit'; }
    DUMP=dump_sqlite
else
    # without the sqlite3 shell: the database file itself
    dump_raw() { cat "$T/keys.db"; }
    DUMP=dump_raw
fi
run sqlite

# ---- a file store: JSON lines beside the key file -------------------------
cat >"$T/file.yaml" <<EOF
credential: [{module: bearer}]
keystore: [{module: file, options: {path: "$T/keys.yaml"}}]
plans: {free: {}, pro: {}}
EOF
KG="$BIN --config $T/file.yaml"
dump_file() { cat "$T/keys.audit.jsonl"; }
DUMP=dump_file
run file
mode=$(stat -c %a "$T/keys.audit.jsonl")
[ "$mode" = 600 ] && ok "file: the log is 0600" || bad "file: mode $mode"
n1=$(grep -c '' "$T/keys.audit.jsonl")
[ "$n1" -eq 10 ] && ok "file: a record a line" || bad "file: $n1 lines"

finish
