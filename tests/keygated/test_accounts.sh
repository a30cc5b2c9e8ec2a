#!/bin/sh
# Accounts through a real keygated (docs/policy.md "Accounts"): a Free
# account with three keys shares its plan's 10 requests an hour (the
# 11th is 429 on each key) and its 1 request in flight; the account id
# reaches the upstream (X-Keygate-Account), /whoami answers the account
# with its external id and metadata, the access log names it;
# `keygate account suspend` gives 403 account_suspended in the running
# keygated within the cache's ttl and the store's refresh, and resume
# restores; a key file written before accounts existed
# (tests/fixtures/keys-v0.yaml, written by keygate at 2c75f22) works as
# it is and, once migrated by the next write, every key keeps its limits.
. "${KEYGATE_SRCDIR:-.}/tests/keygated/lib.sh"

POLICY=$T/policy.yaml
cat >"$POLICY" <<'YAML'
version: 1
key_prefix: whizo
credential: [{module: bearer}]
keystore:
  - {module: file, options: {path: keys.yaml, refresh: 1s}, cache: {ttl: 2s, negative_ttl: 1s}}
plans:
  free:
    limit:
      - {module: fixed_window, control: requisite, options: {name: hour, count: 10, window: 1h}}
      - {module: concurrency, control: requisite, options: {name: concurrency, count: 1}}
  pro:
    limit:
      - {module: fixed_window, control: requisite, options: {name: hour, count: 5, window: 1h}}
YAML
KG="$KEYGATE --config $POLICY"

# check KEY: one /check, its lease (if any) released at once; $CODE.
check() {
    req -H "Authorization: Bearer $1" "$KGD/check"
    l=$(header_value X-Keygate-Lease)
    [ -z "$l" ] || curl -s -o /dev/null -X DELETE "$KGD/leases/$l"
}

A=$($KG account create --name Acme --plan free --external-id cus_42 \
    --metadata '{"tier": "gold", "seats": 3}' 2>/dev/null)
BIG=$(head -c 4000 /dev/zero | tr '\0' x)   # near the 4096-byte cap
C=$($KG account create --name Conc --plan free --metadata "{\"big\":\"$BIG\"}" 2>/dev/null)
for i in 1 2 3; do
    eval "A$i=\$($KG key create --account cus_42 --name a$i 2>/dev/null)"
    eval "C$i=\$($KG key create --account $C --name c$i 2>/dev/null)"
done
[ -n "$A" ] && [ -n "$C" ] && [ -n "$A3" ] && [ -n "$C3" ] && ok "two accounts of three keys" \
    || bad "accounts: A=$A C=$C A3=$A3 C3=$C3"
start_keygated

# ---- 10 an hour across the three keys ---------------------------------------
allowed=0
i=0
for k in "$A1" "$A2" "$A3" "$A1" "$A2" "$A3" "$A1" "$A2" "$A3" "$A1"; do
    i=$((i + 1))
    check "$k"
    [ "$CODE" = 200 ] && allowed=$((allowed + 1))
    [ "$i" -eq 1 ] && has_header "the account id for the upstream" "X-Keygate-Account: $A"
    [ "$i" -eq 3 ] && has_header "key 3: the account's remaining (7 of 10)" "X-RateLimit-Remaining: 7"
done
[ "$allowed" -eq 10 ] && ok "10 requests across the three keys: 10 allowed" || bad "allowed $allowed of 10"
for k in "$A1" "$A2" "$A3"; do
    check "$k"
    if [ "$CODE" = 429 ] && grep -q '"code":"rate_limited"' "$T/b"; then
        ok "the 11th is 429 on key $(printf '%.8s' "$k")"
    else
        bad "11th on $(printf '%.8s' "$k"): $CODE $(cat "$T/b")"
    fi
done
grep -q "\"key_id\":\"$(key_id_of "$A2")\",\"account\":\"$A\"," "$T/access.log" 2>/dev/null \
    || sleep 1   # lines are flushed within 200 ms
grep -q "\"key_id\":\"$(key_id_of "$A2")\",\"account\":\"$A\"," "$T/access.log" \
    && ok "the access log names the account" || bad "access log: $(tail -2 "$T/access.log")"

# ---- /whoami: the account, its external id and metadata --------------------
expect_status "whoami" 200 -H "Authorization: Bearer $A1" "$KGD/whoami"
body_has "whoami: the account" "\"account\":{\"id\":\"$A\",\"external_id\":\"cus_42\",\"metadata\":{\"tier\":\"gold\",\"seats\":3}}"

expect_status "whoami, 4 KB of metadata" 200 -H "Authorization: Bearer $C1" "$KGD/whoami"
body_has "whoami: all of it" "\"metadata\":{\"big\":\"$BIG\"}},\"plan\":\"free\""

# ---- 1 in flight across the keys --------------------------------------------
expect_status "C1 in flight" 200 -H "Authorization: Bearer $C1" "$KGD/check"
LEASE=$(header_value X-Keygate-Lease)
expect_status "C2 while C1 is in flight" 429 -H "Authorization: Bearer $C2" "$KGD/check"
expect_status "C3 while C1 is in flight" 429 -H "Authorization: Bearer $C3" "$KGD/check"
expect_status "C1's lease released" 204 -X DELETE "$KGD/leases/$LEASE"
check "$C3"
[ "$CODE" = 200 ] && ok "C3 once it is released: 200" || bad "C3 after release: $CODE $(cat "$T/b")"

# ---- suspension reaches the running keygated --------------------------------
# Polled with /whoami, which consumes no quota (/check would spend the
# account's 10 while the change is on its way).
# Each key's record is cached on its own (ttl 2s): the keys see the
# suspension one after another, so each is waited for.
suspended_key() { req -H "Authorization: Bearer $1" "$KGD/whoami"; [ "$CODE" = 403 ] && grep -q '"code":"account_suspended"' "$T/b"; }
suspended() { suspended_key "$C1"; }
working() { req -H "Authorization: Bearer $C2" "$KGD/whoami"; [ "$CODE" = 200 ]; }
$KG account suspend "$C" >/dev/null
t0=$(date +%s)
# ttl 2s + refresh 1s: within 4 s; 8 s allowed for a loaded machine
if wait_for 160 suspended; then
    ok "account suspend: 403 account_suspended after $(( $(date +%s) - t0 )) s"
    wait_for 160 suspended_key "$C2" && wait_for 160 suspended_key "$C3" \
        || bad "C2 or C3 not suspended 8 s after C1"
    check "$C2"
    [ "$CODE" = 403 ] && grep -q '"code":"account_suspended"' "$T/b" \
        && ok "/check: 403 account_suspended" || bad "/check while suspended: $CODE $(cat "$T/b")"
    has_header "suspended: X-Keygate-Code" "X-Keygate-Code: account_suspended"
    check "$C3"
    [ "$CODE" = 403 ] && ok "every key of it" || bad "C3 while suspended: $CODE"
else
    bad "still $CODE 8 s after the suspension: $(cat "$T/b")"
fi
check "$A1"
[ "$CODE" = 429 ] && ok "another account is untouched" || bad "A1: $CODE"
$KG account resume "$C" >/dev/null
if wait_for 160 working; then
    check "$C2"
    [ "$CODE" = 200 ] && ok "account resume: 200 again" || bad "/check after resume: $CODE $(cat "$T/b")"
else
    bad "after resume: $CODE $(cat "$T/b")"
fi
stop_keygated

# ---- a key file from before accounts ----------------------------------------
# Written by keygate at 2c75f22 with this policy: k_5e951a3671292e89 on
# free with --limit hour=4/1h, k_59cccf1b09e5d9bc on pro, and
# k_c3cb953ff97afdd1 revoked.  The keys themselves:
V0FREE=whizo_mF9O8zbQTF8cqJFYT4vJhYuZubiHUilS2tLfE7
V0PRO=whizo_YkPg4V3MEUpFKYDhe6JqE77oY0Kv9qEU0w9kVv
V0REV=whizo_qNfGcvXzITqxEQkeRgxtdsRMhrWDCluv3h77W6
cp "$S/tests/fixtures/keys-v0.yaml" "$T/keys.yaml"
chmod 600 "$T/keys.yaml"
# limits KEY N: N allowed, then 429.
limits() {
    got=0
    j=0
    while [ $j -le "$2" ]; do
        check "$1"
        [ "$CODE" = 200 ] && got=$((got + 1))
        j=$((j + 1))
    done
    [ "$got" -eq "$2" ] && [ "$CODE" = 429 ]
}
for phase in "as written" "migrated"; do
    start_keygated
    limits "$V0FREE" 4 && ok "$phase: the free key keeps its own limit (4, then 429)" \
        || bad "$phase: free key: $got allowed, last $CODE"
    limits "$V0PRO" 5 && ok "$phase: the pro key keeps its plan's (5, then 429)" \
        || bad "$phase: pro key: $got allowed, last $CODE"
    expect_status "$phase: the revoked key" 401 -H "Authorization: Bearer $V0REV" "$KGD/check"
    stop_keygated
    if [ "$phase" = "as written" ]; then
        grep -q '^accounts:' "$T/keys.yaml" && bad "read alone, the file was rewritten"
        # The next write migrates: each key into an account of its own.
        $KG key create --plan pro --name new >/dev/null 2>&1 \
            && ok "a key created in the v0 file" || bad "key create on the v0 file"
        grep -q '^- id: acct_5e951a3671292e89$' "$T/keys.yaml" \
            && ok "migrated: acct_ + the key id" || bad "no account in: $(cat "$T/keys.yaml")"
        $KG account show acct_5e951a3671292e89 | grep -q '^limits:      hour=4/3600s$' \
            && ok "migrated: the override moved to the account" \
            || bad "account: $($KG account show acct_5e951a3671292e89 2>&1)"
    fi
done
start_keygated
check "$V0PRO"
has_header "migrated: X-Keygate-Account" "X-Keygate-Account: acct_59cccf1b09e5d9bc"
stop_keygated
finish
