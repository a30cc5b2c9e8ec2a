#!/bin/sh
# The `keygate` command line end to end, on the shipped policy with a
# scratch state folder: key create/list/show/update/revoke/rotate (plain
# and --json), check and its exit codes (0 allowed, 1 denied, 2 usage or
# policy error), policy check (file:line:column, exit 2) and explain,
# plugins, and --help for every command.
set -u
# Under the sanitizer run: ASan and UBSan stay on for every one of the ~95
# processes, but not LeakSanitizer, whose tracer crashes ("Tracer caught
# signal 11", in 2 of the 95 whatever the load) reading a bogus dynamic
# TLS range (LSAN_OPTIONS=verbosity=1 prints "DTLS 7 at 0x1eb-...") left
# by the modules libltdl loads: gcc 12's libsanitizer and glibc 2.36.
# Keeping every module resident (never dlclose'd) moved the crash to two
# other commands, so it is not only unloading.  Leaks of the library are
# checked by the unit tests, which run with LeakSanitizer on.
ASAN_OPTIONS="${ASAN_OPTIONS:+$ASAN_OPTIONS:}detect_leaks=0"
export ASAN_OPTIONS
B=${KEYGATE_BUILDDIR:-.}
S=${KEYGATE_SRCDIR:-.}
BIN="$B/tools/keygate"
CONF="$S/conf/keygate.yaml"
KG="$BIN --config $CONF"
KEYGATE_STATE_DIR=$(mktemp -d)
export KEYGATE_STATE_DIR
T=$KEYGATE_STATE_DIR
trap 'rm -rf "$T"' EXIT
unset KEYGATE_CONFIG
fail=0
n=0
ok() { n=$((n + 1)); echo "ok $n - $1"; }
bad() { n=$((n + 1)); echo "not ok $n - $1"; fail=1; }
# expect DESC WANTED_RC PATTERN -- command...   (stdout+stderr matched)
expect() {
    desc=$1; want=$2; pat=$3; shift 4
    out=$("$@" 2>&1); rc=$?
    if [ "$rc" -ne "$want" ]; then bad "$desc: exit $rc, wanted $want: $out"; return; fi
    if ! printf '%s\n' "$out" | grep -q -e "$pat"; then bad "$desc: output lacks '$pat': $out"; return; fi
    ok "$desc"
}
json_field() {  # json_field NAME < one-line object
    sed -n "s/.*\"$1\":\"\([^\"]*\)\".*/\1/p"
}
KEYRE='^whizo_[0-9A-Za-z]\{38\}$'

# ---- help and usage -------------------------------------------------------
expect "--help" 0 "key create --name NAME --plan PLAN" -- $BIN --help
expect "help" 0 "policy check" -- $BIN help
expect "--version" 0 "^keygate 0\." -- $BIN --version
expect "no command" 2 "usage: keygate" -- $BIN
expect "unknown command" 2 "unknown command 'frobnicate'" -- $BIN frobnicate
expect "unknown option" 2 "usage: keygate" -- $BIN --bogus key list
# Sub-command help works without a policy to load.
for sub in "key --help" "key create --help" "key update --help" "key rotate --help" \
           "check --help" "policy --help" "plugins --help"; do
    expect "$sub" 0 "usage: keygate" -- env KEYGATE_CONFIG=/nonexistent/keygate.yaml $BIN $sub
done
expect "key without a sub-command" 2 "usage: keygate key" -- $KG key
expect "unknown key sub-command" 2 "unknown key command 'explode'" -- $KG key explode

# ---- key create -----------------------------------------------------------
K1=$($KG key create --name alpha --plan pro 2>"$T/err") && ok "key create" || bad "key create: $(cat "$T/err")"
printf '%s\n' "$K1" | grep -q "$KEYRE" && ok "the key has the format" || bad "key: $K1"
grep -q "shown only this once" "$T/err" && ok "create warns the key is shown once" || bad "create stderr: $(cat "$T/err")"
J=$($KG --json key create --name beta --plan free --allow-ip 203.0.113.0/24 --expires 30d)
K2=$(printf '%s' "$J" | json_field key)
ID2=$(printf '%s' "$J" | json_field id)
printf '%s\n' "$K2" | grep -q "$KEYRE" && ok "--json create has key" || bad "json create: $J"
[ -n "$ID2" ] && ok "--json create has id" || bad "json create: $J"
printf '%s' "$J" | grep -q '"plan":"free"' && ok "--json create has the plan" || bad "json create: $J"
expect "create without --plan" 2 "needs --name and --plan" -- $KG key create --name x
expect "create on an unknown plan" 2 "unknown plan 'gold'" -- $KG key create --name x --plan gold
expect "create with a bad CIDR" 2 "not an address or network" -- $KG key create --name x --plan free --allow-ip 300.1.2.3/8
expect "create with a bad expiry" 2 "expires" -- $KG key create --name x --plan free --expires tomorrow-ish
expect "create with a bad limit" 2 "NAME=COUNT/WINDOW" -- $KG key create --name x --plan enterprise --limit hour=lots

# The store (the shipped policy's SQLite file): mode 0600, hashes only.
F="$T/keys.db"
[ "$(stat -c %a "$F")" = 600 ] && ok "key store is 0600" || bad "key store mode $(stat -c %a "$F")"
if grep -q "$K1" "$F" || grep -q "$K2" "$F"; then bad "a key is in the key file"; else ok "no key in the key file"; fi

# ---- list and show --------------------------------------------------------
L=$($KG key list)
printf '%s\n' "$L" | grep -q "^ID " && ok "list has a header" || bad "list: $L"
printf '%s\n' "$L" | grep -q "$ID2" && ok "list shows the id" || bad "list: $L"
printf '%s\n' "$L" | grep -q "$(printf '%.8s' "$K2")" && ok "list shows the display prefix" || bad "list: $L"
if printf '%s\n' "$L" | grep -q -e "$K1" -e "$K2"; then bad "list shows a key"; else ok "list never shows a key"; fi
[ "$($KG --json key list | grep -c '"id":')" -eq 2 ] && ok "--json list: one object per key" || bad "json list: $($KG --json key list)"
expect "show" 0 "plan:        free" -- $KG key show "$ID2"
expect "show has the allowlist" 0 "allowed ips: 203.0.113.0/24" -- $KG key show "$ID2"
expect "--json show" 0 "\"id\":\"$ID2\"" -- $KG --json key show "$ID2"
expect "show an unknown id" 1 "no key with id 'k_nope'" -- $KG key show k_nope
expect "show without an id" 2 "usage" -- $KG key show

# ---- check ----------------------------------------------------------------
expect "check: allowed" 0 "allowed 200 ok.*plan=pro" -- $KG check --header "Authorization: Bearer $K1"
expect "check: X-API-Key" 0 "allowed 200" -- $KG check --header "X-API-Key: $K1"
expect "check: no key is 401 with a challenge" 1 'denied 401 unauthorized.*WWW-Authenticate: Bearer realm="whizo API"' -- $KG check
expect "check: unknown key" 1 "denied 401 unauthorized" -- $KG check --header "Authorization: Bearer whizo_00000000000000000000000000000000000000"
expect "check: two different keys" 1 "denied 400 invalid_request" -- $KG check --header "Authorization: Bearer $K1" --header "X-API-Key: $K2"
expect "check: malformed bearer" 1 "denied 400 invalid_request" -- $KG check --header "Authorization: Bearer a b"
expect "check: --json" 1 '"allowed":false,"status":401,"code":"unauthorized"' -- $KG --json check
expect "check: --json allowed" 0 '"allowed":true,"status":200' -- $KG --json check --header "Authorization: Bearer $K1"
expect "check: outside the key's allowlist" 1 "denied 403 ip_not_allowed" -- $KG check --header "Authorization: Bearer $K2" --ip 198.51.100.7
expect "check: inside the key's allowlist" 0 "allowed 200" -- $KG check --header "Authorization: Bearer $K2" --ip 203.0.113.7
expect "check: bad --ip is usage" 2 "not an IPv4 or IPv6 address" -- $KG check --ip nowhere
expect "check: bad --header is usage" 2 "Name: value" -- $KG check --header "no colon"
expect "check: extra argument is usage" 2 "usage: keygate check" -- $KG check extra
expect "check: policy error is 2" 2 "cannot open the policy" -- $BIN --config "$T/none.yaml" check
expect "check: KEYGATE_CONFIG is used" 0 "allowed 200" -- env KEYGATE_CONFIG="$CONF" $BIN check --header "Authorization: Bearer $K1"

# ---- update, revoke, rotate -------------------------------------------------
# A key's plan is its account's (issue 17): moved with `account update`.
ACC2=$($KG key show "$ID2" | sed -n 's/^account: *//p')
expect "a key's plan is its account's" 2 "keygate account update $ACC2 --plan starter" -- $KG key update "$ID2" --plan starter
expect "update" 0 "name:        renamed" -- $KG key update "$ID2" --name renamed --clear-ips
expect "the account moves to another plan" 0 "plan:        starter" -- $KG account update "$ACC2" --plan starter
expect "update kept" 0 "plan:        starter" -- $KG key show "$ID2"
expect "update cleared the allowlist" 0 "allowed 200" -- $KG check --header "Authorization: Bearer $K2" --ip 198.51.100.7
expect "update to an unknown plan" 2 "unknown plan" -- $KG account update "$ACC2" --plan gold
expect "update an unknown id" 1 "no key with id" -- $KG key update k_nope --name x
expect "update --expires never" 0 "expires:     never" -- $KG key update "$ID2" --expires never
expect "--json update" 0 '"name":"json"' -- $KG --json key update "$ID2" --name json

ID1=$($KG --json key list | grep '"name":"alpha"' | json_field id)
R=$($KG --json key rotate "$ID1" --grace 1h)
K1B=$(printf '%s' "$R" | json_field key)
printf '%s\n' "$K1B" | grep -q "$KEYRE" && ok "rotate prints a new key" || bad "rotate: $R"
printf '%s' "$R" | grep -q "\"replaces\":\"$ID1\"" && ok "rotate says what it replaces" || bad "rotate: $R"
expect "rotated: the new key works" 0 "allowed 200.*plan=pro" -- $KG check --header "Authorization: Bearer $K1B"
expect "rotated: the old key works during the grace" 0 "allowed 200" -- $KG check --header "Authorization: Bearer $K1"
expect "rotated: the old key expires with the grace" 0 "expires:     20" -- $KG key show "$ID1"
ID1B=$(printf '%s' "$R" | json_field id)
K1C=$($KG key rotate "$ID1B" 2>/dev/null)
expect "rotate without grace: old key revoked" 1 "denied 401 key_revoked" -- $KG check --header "Authorization: Bearer $K1B"
expect "rotate without grace: new key works" 0 "allowed 200" -- $KG check --header "Authorization: Bearer $K1C"
expect "rotate a revoked key" 2 "revoked" -- $KG key rotate "$ID1B"
expect "rotate an unknown id" 1 "no key with id" -- $KG key rotate k_nope
expect "rotate: bad grace" 2 "grace soon: expected a duration" -- $KG key rotate "$ID1" --grace soon

expect "revoke" 0 "revoked $ID2" -- $KG key revoke "$ID2"
expect "revoked key" 1 "denied 401 key_revoked" -- $KG check --header "Authorization: Bearer $K2"
expect "--json revoke" 0 "\"status\":\"revoked\"" -- $KG --json key revoke "$ID2"
expect "revoke an unknown id" 1 "no key with id" -- $KG key revoke k_nope
expect "show a revoked key" 0 "status:      revoked" -- $KG key show "$ID2"

# ---- key names: one line of 1 to 128 bytes (issue 23 item 6) --------------
expect "name: empty is refused" 2 "the name is empty" -- $KG key create --name '' --plan free
expect "name: a newline is refused" 2 "control character (0x0a at byte 3)" -- $KG key create --name "$(printf 'two\nlines')" --plan free
expect "name: an escape is refused" 2 "control character (0x1b" -- $KG key create --name "$(printf 'x\033[2J')" --plan free
N128=$(printf '%0128d' 0)
expect "name: 129 bytes are refused" 2 "longer than 128 bytes" -- $KG key create --name "${N128}9" --plan free
expect "name: 128 bytes are taken" 0 "$KEYRE" -- $KG key create --name "$N128" --plan free
NID=$($KG --json key list | grep "\"name\":\"$N128\"" | json_field id)
expect "name: a rename to '' is refused" 2 "the name is empty" -- $KG key update "$NID" --name ''
expect "name: a rename to two lines is refused" 2 "control character" -- $KG key update "$NID" --name "$(printf 'a\nb')"
[ "$($KG key list | wc -l)" -eq "$(( $($KG --json key list | grep -c '"id":') + 1 ))" ] \
    && ok "key list: a row a key" || bad "key list rows: $($KG key list)"
$KG key revoke "$NID" >/dev/null

# ---- --json wherever it stands; lists are one array (issue 23 item 7) ------
L=$($KG key list --json 2>&1) && ok "key list --json is taken" || bad "key list --json: $L"
[ "$(printf '%s\n' "$L" | head -1)" = "[" ] && [ "$(printf '%s\n' "$L" | tail -1)" = "]" ] \
    && ok "--json key list is one array" || bad "json list: $L"
NL=$(printf '%s\n' "$L" | grep -c '"id":')
[ "$(printf '%s\n' "$L" | grep -c '^{"id":.*},$')" -eq $((NL - 1)) ] \
    && ok "--json key list: its items are comma-separated" || bad "json list: $L"
[ "$($KG --json key list)" = "$L" ] && ok "--json before and after the command agree" || bad "json list before: $($KG --json key list)"
LL=$($KG key list --jsonl)
[ "$(printf '%s\n' "$LL" | grep -c '^{"id":.*}$')" -eq "$NL" ] && [ "$(printf '%s\n' "$LL" | wc -l)" -eq "$NL" ] \
    && ok "--jsonl key list: an object a line" || bad "jsonl list: $LL"
printf 'credential: [{module: bearer}]\nkeystore: [{module: file, options: {path: %s/none.yaml}}]\nplans: {free: {}}\n' "$T" >"$T/empty.yaml"
expect "--json key list of no key is []" 0 '^\[\]$' -- $BIN --config "$T/empty.yaml" key list --json
expect "key show ID --json" 0 "\"id\":\"$ID2\"" -- $KG key show "$ID2" --json
expect "check --json" 1 '"allowed":false,"status":401' -- $KG check --json
expect "policy check --json" 0 '"valid":true' -- $KG policy check --json
expect "policy check FILE --json" 0 '"valid":true' -- $BIN policy check "$CONF" --json
expect "db status --json" 0 '"from":' -- $KG db status --json
expect "webhook secret new --json" 0 '"secret":"whsec_' -- $BIN webhook secret new --json
expect "plugins --json is one array" 0 '^\[$' -- env KEYGATE_PLUGIN_PATH="$B/plugins" $BIN plugins --json
expect "--jsonl before the command" 0 '^{"name":' -- env KEYGATE_PLUGIN_PATH="$B/plugins" $BIN --jsonl plugins

# ---- status: expired (issue 23 item 4) --------------------------------------
XK=$($KG --json key create --name gone --plan free --expires 2020-01-01)
XID=$(printf '%s' "$XK" | json_field id)
expect "key list says expired" 0 "^$XID .* expired  2020-01-01" -- $KG key list
expect "key show says expired" 0 "status:      expired" -- $KG key show "$XID"
expect "key show --json says expired" 0 '"status":"expired"' -- $KG key show "$XID" --json
AID=$($KG --json key create --name live --plan free --expires 30d | json_field id)
expect "a key that expires later is active" 0 "status:      active" -- $KG key show "$AID"
expect "a check of it agrees" 1 "key_expired" -- $KG check --header "X-API-Key: $(printf '%s' "$XK" | json_field key)"

# ---- update: replacing and editing lists (issue 23 item 5) ------------------
EK=$($KG --json key create --name lists --plan enterprise --permission a:read --permission b:write --allow-ip 10.0.0.0/8)
EID=$(printf '%s' "$EK" | json_field id)
expect "update --help says --permission replaces" 0 "REPLACE the key's whole list" -- $KG key update --help
expect "update --permission says what it replaced" 0 "permissions were replaced; they were: a:read b:write" -- $KG key update "$EID" --permission c:read
expect "... and replaced it" 0 "permissions: c:read$" -- $KG key show "$EID"
expect "--add-permission adds" 0 "permissions: c:read d:read$" -- $KG key update "$EID" --add-permission d:read --add-permission c:read
expect "--remove-permission removes" 0 "permissions: d:read$" -- $KG key update "$EID" --remove-permission c:read
expect "--remove-permission of none it has" 2 "no such entry; its permissions: d:read" -- $KG key update "$EID" --remove-permission zz
expect "... changes nothing" 0 "permissions: d:read$" -- $KG key show "$EID"
expect "--permission with --add-permission" 2 "give one or the other" -- $KG key update "$EID" --permission x --add-permission y
expect "--add-allow-ip adds" 0 "allowed ips: 10.0.0.0/8 192.0.2.0/24$" -- $KG key update "$EID" --add-allow-ip 192.0.2.0/24
expect "--remove-allow-ip removes" 0 "allowed ips: 192.0.2.0/24$" -- $KG key update "$EID" --remove-allow-ip 10.0.0.0/8
expect "--allow-ip says what it replaced" 0 "allowed networks were replaced; they were: 192.0.2.0/24" -- $KG key update "$EID" --allow-ip 198.51.100.0/24
expect "--add-permission is for update" 2 "key create does not take --add-permission" -- $KG key create --name x --plan enterprise --add-permission a
expect "rotate takes no --plan" 2 "key rotate does not take --plan" -- $KG key rotate "$EID" --plan free
expect "show takes no --name" 2 "key show does not take --name" -- $KG key show "$EID" --name x

# ---- settings nothing would enforce are refused (issue 23 item 2) ---------
expect "--permission on a plan without scope" 2 "plan 'free' does not check permissions.*plans that do: enterprise" -- $KG key create --name x --plan free --permission a:read
# ... but the admin API's own permissions, which keygated checks on any plan
expect "--permission account:manage on a plan without scope" 0 "$KEYRE" -- $KG key create --name x --plan free --permission account:manage
expect "... not with a data permission beside it" 2 "plan 'free' does not check permissions" -- $KG key create --name x --plan free --permission account:manage --permission a:read
expect "--limit of a name the plan lacks" 2 "plan 'enterprise' has no limit named 'minute'.*its limits: burst hour day concurrency" -- $KG key create --name x --plan enterprise --limit minute=5/1m
expect "--limit of a name the plan has" 0 "$KEYRE" -- $KG key create --name x --plan pro --limit hour=5/1h
# An account moving to another plan takes its keys along: refused while a
# key carries what the new plan would not enforce (issue 23 item 2).
EACC=$($KG key show "$EID" | sed -n 's/^account: *//p')
expect "an account with a key's permissions to a plan without scope" 2 "plan 'pro' does not check permissions" -- $KG account update "$EACC" --plan pro
expect "... names the key" 2 "key $EID .* of account $EACC carries that setting" -- $KG account update "$EACC" --plan pro
expect "... the account was not moved" 0 "plan:        enterprise" -- $KG account show "$EACC"
expect "--add-permission on a plan without scope" 2 "does not check permissions" -- $KG key update "$ID2" --add-permission a:read
expect "a rename keeps what it had" 0 "name:        renamed" -- $KG key update "$EID" --name renamed
cat >"$T/bare.yaml" <<EOF
credential: [{module: bearer}]
keystore: [{module: file, options: {path: $T/bare-keys.yaml}}]
plans: {bare: {}}
EOF
expect "--allow-ip on a plan without ipacl" 2 "plan 'bare' does not check the client's address.*plans that do: none" -- $BIN --config "$T/bare.yaml" key create --name x --plan bare --allow-ip 10.0.0.0/8
expect "--limit on a plan without limits" 2 "plan 'bare' has no limit named 'hour'.*its limits: none" -- $BIN --config "$T/bare.yaml" key create --name x --plan bare --limit hour=1/1h

# A name from a store that did not check it (written by hand) is shown on
# its row, its control characters as \xNN, and the key can be revoked.
cat >"$T/bare-keys.yaml" <<EOF
keys:
  - id: k_hand
    name: "two\nlines\e"
    prefix: "whizo_ab"
    hash: $(printf '%064d' 0)
    plan: bare
    status: active
EOF
expect "a hand-written name is one row" 0 'k_hand .*two\\x0alines\\x1b$' -- $BIN --config "$T/bare.yaml" key list
expect "... and one line of key show" 0 'name:        two\\x0alines\\x1b$' -- $BIN --config "$T/bare.yaml" key show k_hand
expect "... and the key is revoked" 0 "revoked k_hand" -- $BIN --config "$T/bare.yaml" key revoke k_hand

# ---- policy -----------------------------------------------------------------
expect "policy check: shipped" 0 "ok (5 plans)" -- $KG policy check
expect "policy check FILE" 0 "ok (5 plans)" -- $BIN policy check "$CONF"
expect "policy check --json" 0 '"valid":true,"plans":5' -- $BIN --json policy check "$CONF"
cp "$CONF" "$T/we\"ird.yaml"
expect "policy check --json escapes the path" 0 'we\\"ird.yaml","valid":true' -- $BIN --json policy check "$T/we\"ird.yaml"
cat >"$T/bad.yaml" <<EOF
credential:
  - module: bearer
keystore:
  - module: file
    options: {colour: red, path: $T/k.yaml}
plans: {free: {}}
EOF
expect "policy check: unknown option at file:line:column" 2 "$T/bad.yaml:5:15: unknown option 'colour'" -- $BIN policy check "$T/bad.yaml"
printf 'credential:\n  - module: bearer\n   control: x\n' >"$T/syntax.yaml"
expect "policy check: YAML syntax error at file:line:column" 2 "$T/syntax.yaml:3:4: YAML syntax error" -- $BIN policy check "$T/syntax.yaml"
printf 'credential: [{module: bearer, control: maybe}]\nkeystore: [{module: file, options: {path: x}}]\nplans: {free: {}}\n' >"$T/ctl.yaml"
expect "policy check: bad control at file:line:column" 2 "$T/ctl.yaml:1:40: unknown control 'maybe'" -- $BIN policy check "$T/ctl.yaml"
printf 'credential: [{module: nosuch}]\nkeystore: [{module: file, options: {path: x}}]\nplans: {free: {}}\n' >"$T/np.yaml"
expect "policy check: plugin not found" 2 "$T/np.yaml:1:23: plugin 'nosuch' not found" -- $BIN policy check "$T/np.yaml"
expect "policy check: missing file" 2 "cannot open the policy" -- $BIN policy check "$T/none.yaml"
expect "policy explain" 0 "stage credential:" -- $KG policy explain
expect "policy explain: plans" 0 "plan enterprise" -- $KG policy explain
expect "policy explain: limit stage" 0 "fixed_window" -- $KG policy explain "$CONF"
expect "policy: unknown sub-command" 2 "usage: keygate policy" -- $KG policy lint

# ---- plugins ----------------------------------------------------------------
PP="$B/plugins"
expect "plugins" 0 "bearer  *credential 1\.[0-9]" -- env KEYGATE_PLUGIN_PATH="$PP" $BIN plugins
expect "plugins: keystore" 0 "file  *keystore" -- env KEYGATE_PLUGIN_PATH="$PP" $BIN plugins
expect "plugins: count" 0 "plugins, 0 cannot be loaded" -- env KEYGATE_PLUGIN_PATH="$PP" $BIN plugins
expect "plugins: broken ones and why" 1 "badabi .*cannot load: .*ABI 99.0" -- env KEYGATE_PLUGIN_PATH="$PP:$B/tests/fixtures" $BIN plugins
expect "plugins: missing dependency named" 1 "libkgvanish.so.0" -- env KEYGATE_PLUGIN_PATH="$B/tests/fixtures/missingdep" $BIN plugins
expect "plugins --json" 0 '"name":"header","path":"[^"]*","kind":"credential","abi":"1\.[0-9]*"' -- env KEYGATE_PLUGIN_PATH="$PP" $BIN --json plugins
expect "plugins: extra argument" 2 "usage: keygate plugins" -- $BIN plugins extra
# The policy's plugin_path is searched first, and the search path says
# what KEYGATE_PLUGIN_PATH holds (issue 23 item 8).
printf 'plugin_path: [%s]\ncredential: [{module: nosuch}]\n' "$B/plugins" >"$T/pp.yaml"
expect "plugins: the policy's plugin_path" 0 "bearer  *credential" -- env -u KEYGATE_PLUGIN_PATH $BIN --config "$T/pp.yaml" plugins
expect "plugins: says where it came from" 0 "^search path: $B/plugins (plugin_path of $T/pp.yaml), then " -- env -u KEYGATE_PLUGIN_PATH $BIN --config "$T/pp.yaml" plugins
expect "plugins: KEYGATE_PLUGIN_PATH's value" 0 "then /nowhere/a:/nowhere/b (KEYGATE_PLUGIN_PATH), then" -- env KEYGATE_PLUGIN_PATH=/nowhere/a:/nowhere/b $BIN --config "$T/pp.yaml" plugins
out=$(env KEYGATE_PLUGIN_PATH=/nowhere $BIN --config "$T/pp.yaml" plugins 2>&1)
case "$out" in *'$KEYGATE_PLUGIN_PATH'*) bad "plugins prints the variable's name: $out" ;; *) ok "plugins prints no '\$KEYGATE_PLUGIN_PATH'" ;; esac
expect "plugins: a policy given must be readable" 2 "cannot open the policy" -- $BIN --config "$T/none.yaml" plugins

echo "1..$n"
[ $fail -eq 0 ] && echo "$n passed, 0 failed" || echo "some of $n failed"
exit $fail
