#!/bin/sh
# `keygate account ...` and `keygate key create --account` end to end on
# the file store (docs/policy.md "Accounts", docs/cli.md): create, list,
# show, update, suspend, resume, delete (refused while keys exist,
# --with-keys revokes them), --json and --jsonl; a key takes its
# account's plan, --plan with --account is refused pointing at the
# account, --plan alone makes an account of the key's own and says so.
# Bad input (unknown account, unknown plan, a key outside its account's
# ceiling, a duplicate external id, metadata not an object or too long):
# the field named, exit 2, the key file byte for byte as it was.
set -u
ASAN_OPTIONS="${ASAN_OPTIONS:+$ASAN_OPTIONS:}detect_leaks=0"   # as test_cli.sh
export ASAN_OPTIONS
B=${KEYGATE_BUILDDIR:-.}
BIN="$B/tools/keygate"
T=$(mktemp -d)
trap 'rm -rf "$T"' EXIT
unset KEYGATE_CONFIG
fail=0
n=0
ok() { n=$((n + 1)); echo "ok $n - $1"; }
bad() { n=$((n + 1)); echo "not ok $n - $1"; fail=1; }
expect() {  # expect DESC WANTED_RC PATTERN -- command...  (stdout+stderr)
    desc=$1; want=$2; pat=$3; shift 4
    out=$("$@" 2>&1); rc=$?
    if [ "$rc" -ne "$want" ]; then bad "$desc: exit $rc, wanted $want: $out"; return; fi
    if ! printf '%s\n' "$out" | grep -q -e "$pat"; then bad "$desc: output lacks '$pat': $out"; return; fi
    ok "$desc"
}
# refused DESC PATTERN -- command...: exit 2, PATTERN said, nothing written
refused() {
    desc=$1; pat=$2; shift 3
    before=$(cksum < "$T/keys.yaml")
    expect "$desc" 2 "$pat" -- "$@"
    [ "$(cksum < "$T/keys.yaml")" = "$before" ] && ok "$desc: nothing written" \
        || bad "$desc: the key file changed"
}
json_field() { sed -n "s/.*\"$1\":\"\([^\"]*\)\".*/\1/p"; }

cat > "$T/p.yaml" <<EOF
credential: [{module: bearer}]
keystore: [{module: file, options: {path: "$T/keys.yaml", refresh: 0}}]
plans:
  free:
    account: [{module: ipacl}, {module: scope, options: {routes: {"GET /v1/jobs": jobs:read, "POST /v1/jobs": jobs:write}, unmapped: allow}}]
    limit:
      - {module: fixed_window, control: requisite, options: {name: hour, count: 10, window: 1h}}
      - {module: fixed_window, control: requisite, per: key, options: {name: ci, count: 100, window: 1h}}
  pro: {limit: [{module: fixed_window, control: requisite, options: {name: hour, count: 200, window: 1h}}]}
EOF
KG="$BIN --config $T/p.yaml"

expect "account --help needs no policy" 0 "keygate account create --name NAME --plan PLAN" \
    -- env KEYGATE_CONFIG=/nonexistent $BIN account --help
expect "account without a sub-command" 2 "usage: keygate account" -- $KG account
expect "unknown account sub-command" 2 "unknown account command 'explode'" -- $KG account explode
expect "--help names the account commands" 0 "account create --name NAME --plan PLAN" -- $BIN --help

# ---- create, list, show ---------------------------------------------------
A=$($KG account create --name Acme --plan free --external-id cus_1 \
    --allow-ip 10.0.0.0/8 --permission jobs:read --metadata '{"tier": "gold"}' 2>"$T/err") \
    && ok "account create" || bad "account create: $(cat "$T/err")"
printf '%s\n' "$A" | grep -q '^acct_[0-9a-f]\{16\}$' && ok "account create prints the id" || bad "id: $A"
grep -q "key create --account $A" "$T/err" && ok "account create says how to add keys" || bad "stderr: $(cat "$T/err")"
expect "account create needs --plan" 2 "needs --name and --plan" -- $KG account create --name x
expect "account create refuses --with-keys" 2 "account create does not take --with-keys" \
    -- $KG account create --name x --plan free --with-keys
J=$($KG --json account create --name Beta --plan pro)
B2=$(printf '%s' "$J" | json_field id)
printf '%s' "$J" | grep -q '"plan":"pro"' && [ -n "$B2" ] && ok "--json account create" || bad "json create: $J"
expect "account list" 0 "^$A  *free  *active  *cus_1  *Acme$" -- $KG account list
L=$($KG account list --json)
[ "$(printf '%s\n' "$L" | head -1)" = "[" ] && [ "$(printf '%s\n' "$L" | grep -c '"id":"acct_')" -eq 2 ] \
    && ok "account list --json: an array of 2" || bad "json list: $L"
[ "$($KG account list --jsonl | grep -c '^{"id":"acct_')" -eq 2 ] && ok "account list --jsonl" \
    || bad "jsonl list: $($KG account list --jsonl)"
expect "account show by external id" 0 'metadata:    {"tier":"gold"}' -- $KG account show cus_1
expect "account show --json" 0 "\"id\":\"$A\".*\"external_id\":\"cus_1\".*\"metadata\":{\"tier\":\"gold\"}" \
    -- $KG account show cus_1 --json
expect "account show of no account: exit 1" 1 "no account with id or external id 'nope'" -- $KG account show nope

# ---- keys of an account ---------------------------------------------------
K1=$($KG --json key create --account cus_1 --name k1 --allow-ip 10.1.0.0/16)
KID1=$(printf '%s' "$K1" | json_field id)
printf '%s' "$K1" | grep -q "\"account\":\"$A\",\"plan\":\"free\"" \
    && ok "key create --account: the key is the account's, on its plan" || bad "json: $K1"
KEY1=$(printf '%s' "$K1" | json_field key)
expect "check names the account" 0 "allowed 200 ok key=$KID1 account=$A plan=free" \
    -- $KG check --ip 10.1.2.3 --header "Authorization: Bearer $KEY1"
expect "check --json: the account, its external id and metadata" 0 \
    "\"account\":\"$A\",\"account_external_id\":\"cus_1\",\"account_metadata\":{\"tier\":\"gold\"}" \
    -- $KG check --json --ip 10.1.2.3 --header "Authorization: Bearer $KEY1"
expect "key create --account ID (the account's id)" 0 "on plan free" -- $KG key create --account "$A" --name k2
refused "key create --plan with --account" "account $A is on plan 'free' (to change it: keygate account update $A --plan pro)" \
    -- $KG key create --account cus_1 --name k3 --plan pro
refused "key create, unknown account" "--account nope: no such account" -- $KG key create --account nope --name k3
refused "key create, a network outside the account's" "allowed_cidrs: '11.0.0.0/8' is outside the networks of account '$A'" \
    -- $KG key create --account cus_1 --name k3 --allow-ip 11.0.0.0/8
refused "key create, a permission outside the account's" "permission: 'jobs:write' is outside the permissions of account '$A'" \
    -- $KG key create --account cus_1 --name k3 --permission jobs:write
expect "key create without --account or --plan" 2 "needs --name and --plan PLAN .* or --name and --account ID" \
    -- $KG key create --name k3
$KG key create --plan pro --name solo >"$T/out" 2>"$T/err" && ok "key create --plan" || bad "key create --plan: $(cat "$T/err")"
SOLO=$(sed -n 's/^created account \(acct_[0-9a-f]*\) for it, on plan pro (no --account given).*/\1/p' "$T/err")
[ -n "$SOLO" ] && ok "key create --plan says it made the key an account" || bad "stderr: $(cat "$T/err")"
expect "that account is listed" 0 "^$SOLO  *pro  *active  *-  *solo$" -- $KG account list
refused "key update --plan of an account's key" "key update: --plan: a key is on its account's plan; account $A is on plan 'free' (to change it: keygate account update $A --plan pro)" \
    -- $KG key update "$KID1" --plan pro
expect "key list shows the account" 0 "^$KID1 .* $A k1$" -- $KG key list
expect "key show shows the account" 0 "^account:     $A$" -- $KG key show "$KID1"
expect "account show lists its keys" 0 "^keys:        $KID1 k_" -- $KG account show cus_1

# ---- bad input on accounts ------------------------------------------------
refused "duplicate external id" "external_id: 'cus_1' is account $A's already" \
    -- $KG account create --name Dup --plan free --external-id cus_1
refused "unknown plan" "unknown plan 'gold'" -- $KG account create --name G --plan gold
refused "metadata not an object" "--metadata: expected one JSON object" \
    -- $KG account create --name M --plan free --metadata '[1,2]'
BIG=$(head -c 4100 /dev/zero | tr '\0' x)
refused "metadata over its cap" "--metadata: expected one JSON object of at most 4096 bytes" \
    -- $KG account create --name M --plan free --metadata "{\"a\":\"$BIG\"}"
refused "a bad limit" "--limit hour=lots: expected NAME=COUNT/WINDOW" -- $KG account update cus_1 --limit hour=lots
refused "a limit the plan lacks" "limit: plan 'free' has no limit named 'nosuch'" -- $KG account update cus_1 --limit nosuch=1/1h
refused "a ceiling that leaves a key out" "key '$KID1' has it" -- $KG account update cus_1 --allow-ip 192.168.0.0/16
refused "update to an external id another account has" "external_id: 'cus_1'" -- $KG account update "$B2" --external-id cus_1

# ---- update, suspend, resume ----------------------------------------------
expect "account update" 0 "limits:      hour=20/3600s" -- $KG account update cus_1 --name "Acme Inc" --limit hour=20/1h
expect "account update --json" 0 '"metadata":{"b":2}' -- $KG account update cus_1 --metadata '{"b":2}' --json
expect "account update --clear-metadata" 0 '^metadata:    $' -- $KG account update cus_1 --clear-metadata
expect "account suspend" 0 "suspended $A" -- $KG account suspend cus_1
expect "suspended, shown" 0 "^status:      suspended$" -- $KG account show cus_1
expect "account resume --json" 0 "{\"id\":\"$A\",\"status\":\"active\"}" -- $KG account resume cus_1 --json

# ---- delete ---------------------------------------------------------------
refused "delete while keys exist" "has 2 keys that are not revoked.*--with-keys" -- $KG account delete cus_1
expect "delete of an account without keys" 0 "deleted $B2" -- $KG account delete "$B2"
expect "delete --with-keys" 0 "deleted $A; its keys are revoked" -- $KG account delete cus_1 --with-keys
expect "its keys are revoked" 0 "^$KID1 .* revoked .* $A k1$" -- $KG key list
expect "the account is gone" 1 "no account with id" -- $KG account show "$A"

echo "1..$n"
exit $fail
