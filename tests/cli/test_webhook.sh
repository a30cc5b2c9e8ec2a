#!/bin/sh
# End-to-end tests of `keygate webhook`: secrets, sign and verify with
# every scheme, the published vectors, rotation, every failure reason,
# malformed headers and usage errors (exit 0 valid, 1 invalid, 2 usage).
set -u
B=${KEYGATE_BUILDDIR:-.}
KG="$B/tools/keygate"
: "${KEYGATE_PLUGIN_PATH:=$B/plugins}"
export KEYGATE_PLUGIN_PATH
unset KEYGATE_CONFIG
T=$(mktemp -d)
trap 'rm -rf "$T"' EXIT
fails=0
n=0

fail() { echo "FAIL: $*"; fails=$((fails + 1)); }

# expect CODE DESCRIPTION -- command...   (stdout+stderr in $T/out)
expect() {
    want=$1; what=$2; shift 3
    n=$((n + 1))
    "$@" >"$T/out" 2>&1
    got=$?
    if [ "$got" -ne "$want" ]; then
        fail "$what: exit $got, expected $want"; sed 's/^/    /' "$T/out"
    fi
}
has() {  # has TEXT DESCRIPTION: $T/out contains TEXT
    grep -qF -- "$1" "$T/out" || { fail "$2: output lacks '$1'"; sed 's/^/    /' "$T/out"; }
}

SPEC_SECRET=whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw
SPEC_ID=msg_p5jXN8AQM9LWM0D4loKWxJek
printf '%s' '{"test": 2432232314}' >"$T/spec"
printf 'Hello, World!' >"$T/hello"

# ---- secrets ----------------------------------------------------------
expect 0 "secret new" -- "$KG" webhook secret new
grep -qE '^whsec_[A-Za-z0-9+/]{43}=$' "$T/out" || fail "secret new: $(cat "$T/out")"
cp "$T/out" "$T/s1"
expect 0 "secret new again" -- "$KG" webhook secret new --scheme v1
cmp -s "$T/out" "$T/s1" && fail "two secrets are equal"
expect 0 "secret new v1a" -- "$KG" webhook secret new --scheme v1a
[ "$(wc -l <"$T/out")" -eq 2 ] || fail "v1a prints two lines"
SK=$(sed -n 1p "$T/out"); PK=$(sed -n 2p "$T/out")
case "$SK" in whsk_*) ;; *) fail "v1a secret key: $SK";; esac
case "$PK" in whpk_*) ;; *) fail "v1a public key: $PK";; esac
expect 0 "secret new --json" -- "$KG" --json webhook secret new --scheme v1a
has '"public":"whpk_' "secret json"
expect 2 "secret new --scheme v2" -- "$KG" webhook secret new --scheme v2
has "v1a" "secret scheme usage"
expect 2 "secret without new" -- "$KG" webhook secret

# ---- the published vectors --------------------------------------------
expect 0 "spec vector" -- sh -c "'$KG' webhook sign --scheme standard --secret $SPEC_SECRET --id $SPEC_ID --timestamp 1614265330 <'$T/spec'"
printf 'webhook-id: %s\nwebhook-timestamp: 1614265330\nwebhook-signature: %s\n' \
    "$SPEC_ID" 'v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=' >"$T/want"
cmp -s "$T/out" "$T/want" || { fail "spec vector output"; diff "$T/want" "$T/out"; }
expect 0 "github vector" -- sh -c "'$KG' webhook sign --scheme github --secret \"It's a Secret to Everybody\" <'$T/hello'"
[ "$(cat "$T/out")" = "X-Hub-Signature-256: sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17" ] ||
    fail "github vector: $(cat "$T/out")"
expect 0 "spec vector verifies" -- sh -c "'$KG' webhook verify --secret $SPEC_SECRET \
    --header 'webhook-id: $SPEC_ID' --header 'webhook-timestamp: 1614265330' \
    --header 'webhook-signature: v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=' \
    --now 1614265330 <'$T/spec'"
has "valid (standard)" "spec verify"

# sign_to FILE SCHEME PAYLOAD SECRET... : headers as --header arguments in FILE
sign_to() {
    out=$1; scheme=$2; payload=$3; shift 3
    args=""
    for s in "$@"; do args="$args --secret $s"; done
    # shellcheck disable=SC2086
    "$KG" webhook sign --scheme "$scheme" $args --id msg_cli --timestamp 1700000000 \
        <"$payload" >"$T/headers" || { fail "sign $scheme"; return; }
    : >"$out"
    while IFS= read -r line; do printf '%s\n' "$line" >>"$out"; done <"$T/headers"
}
# verify_with CODE WHAT HEADERFILE PAYLOAD [options...]
verify_with() {
    code=$1; what=$2; hf=$3; payload=$4; shift 4
    set -- "$@"
    n=$((n + 1))
    # Build the --header list from the file, one argument per line.
    (
        set --  "$@"
        while IFS= read -r line; do set -- "$@" --header "$line"; done <"$hf"
        exec "$KG" webhook verify "$@" <"$payload"
    ) >"$T/out" 2>&1
    got=$?
    [ "$got" -eq "$code" ] || { fail "$what: exit $got, expected $code"; sed 's/^/    /' "$T/out"; }
}

# ---- round trips, every scheme ----------------------------------------
S1=$(cat "$T/s1" | tr -d '\n')
printf 'line one\nline two\n' >"$T/p1"
printf 'line one\nline two' >"$T/p1nonl"
printf 'a\000b\000c' >"$T/pnul"
for scheme in standard github stripe; do
    for p in p1 p1nonl pnul; do
        sign_to "$T/h" $scheme "$T/$p" "$S1"
        verify_with 0 "$scheme round trip $p" "$T/h" "$T/$p" --secret "$S1" --now 1700000000
        has "valid ($scheme)" "$scheme $p"
    done
    # A newline more or less is another payload.
    sign_to "$T/h" $scheme "$T/p1" "$S1"
    verify_with 1 "$scheme payload without the newline" "$T/h" "$T/p1nonl" --secret "$S1" --now 1700000000
    has "no_matching_signature" "$scheme newline"
    verify_with 0 "$scheme --scheme given" "$T/h" "$T/p1" --secret "$S1" --scheme $scheme --now 1700000000
done
# v1a: the receiver holds only the public key.
sign_to "$T/h" standard "$T/p1" "$SK"
grep -q 'v1a,' "$T/h" || fail "v1a signature"
verify_with 0 "v1a with whpk_" "$T/h" "$T/p1" --secret "$PK" --now 1700000000
verify_with 1 "v1a tampered" "$T/h" "$T/p1nonl" --secret "$PK" --now 1700000000
has "no_matching_signature" "v1a tampered"

# ---- rotation ------------------------------------------------------------
"$KG" webhook secret new >"$T/s2"; S2=$(tr -d '\n' <"$T/s2")
"$KG" webhook secret new >"$T/s3"; S3=$(tr -d '\n' <"$T/s3")
for scheme in standard stripe; do
    sign_to "$T/h" $scheme "$T/p1" "$S2" "$S1"
    verify_with 0 "$scheme rotation, receiver has the new" "$T/h" "$T/p1" --secret "$S2" --now 1700000000
    verify_with 0 "$scheme rotation, receiver has the old" "$T/h" "$T/p1" --secret "$S1" --now 1700000000
    verify_with 1 "$scheme rotation, receiver has another" "$T/h" "$T/p1" --secret "$S3" --now 1700000000
done
for scheme in standard stripe github; do
    sign_to "$T/h" $scheme "$T/p1" "$S1"
    verify_with 0 "$scheme receiver holds new and old" "$T/h" "$T/p1" --secret "$S2" --secret "$S1" --now 1700000000
done

# Secrets from a file: newest first, comments and blank lines skipped.
printf '# webhook secrets, newest first\n%s\n\n%s\n' "$S2" "$S1" >"$T/secrets"
sign_to "$T/h" standard "$T/p1" "$S1"
n=$((n + 1))
( set --; while IFS= read -r l; do set -- "$@" --header "$l"; done <"$T/h"
  exec "$KG" webhook verify --secret-file "$T/secrets" --now 1700000000 "$@" <"$T/p1" ) >"$T/out" 2>&1
[ $? -eq 0 ] || { fail "verify --secret-file"; cat "$T/out"; }
expect 0 "sign --secret-file" -- sh -c "'$KG' webhook sign --scheme standard --secret-file '$T/secrets' --id m --timestamp 1700000000 <'$T/p1'"
[ "$(grep -o 'v1,' "$T/out" | wc -l)" -eq 2 ] || fail "sign --secret-file: two signatures"
expect 2 "empty secret file" -- sh -c "'$KG' webhook sign --scheme standard --secret-file /dev/null <'$T/p1'"
expect 2 "missing secret file" -- sh -c "'$KG' webhook sign --scheme standard --secret-file '$T/nope' <'$T/p1'"

# ---- every failure reason --------------------------------------------------
sign_to "$T/h" standard "$T/p1" "$S1"
grep -v webhook-timestamp "$T/h" >"$T/h2"
verify_with 1 "missing timestamp" "$T/h2" "$T/p1" --secret "$S1" --now 1700000000
has "missing_header" "missing timestamp"; has "webhook-timestamp" "missing timestamp names it"
printf 'Content-Type: application/json\n' >"$T/h2"
verify_with 1 "no signature header" "$T/h2" "$T/p1" --secret "$S1"
has "missing_header" "no signature header"
verify_with 1 "too old" "$T/h" "$T/p1" --secret "$S1" --now 1700000301
has "timestamp_too_old" "too old"
verify_with 0 "old within tolerance" "$T/h" "$T/p1" --secret "$S1" --now 1700000300
verify_with 1 "in the future" "$T/h" "$T/p1" --secret "$S1" --now 1699999699
has "timestamp_in_future" "future"
verify_with 0 "future within tolerance" "$T/h" "$T/p1" --secret "$S1" --now 1699999700
verify_with 0 "wider tolerance" "$T/h" "$T/p1" --secret "$S1" --now 1700003600 --tolerance 1h
verify_with 1 "narrower tolerance" "$T/h" "$T/p1" --secret "$S1" --now 1700000011 --tolerance 10
verify_with 1 "wrong secret" "$T/h" "$T/p1" --secret "$S2" --now 1700000000
has "no_matching_signature" "wrong secret"
sed 's/msg_cli/msg_clj/' "$T/h" >"$T/h2"
verify_with 1 "tampered id" "$T/h2" "$T/p1" --secret "$S1" --now 1700000000
has "no_matching_signature" "tampered id"
sed 's/1700000000/1700000001/' "$T/h" >"$T/h2"
verify_with 1 "tampered timestamp" "$T/h2" "$T/p1" --secret "$S1" --now 1700000000
has "no_matching_signature" "tampered timestamp"
# The default tolerance is 5 minutes; the clock is the real one without --now.
verify_with 1 "real clock: a 2023 webhook is too old" "$T/h" "$T/p1" --secret "$S1"
has "timestamp_too_old" "real clock"

# ---- malformed headers: exit 1 with bad_format, never a crash ---------------
ID='webhook-id: msg_cli'
TSH='webhook-timestamp: 1700000000'
i=0
while IFS= read -r bad; do
    i=$((i + 1))
    case "$bad" in
    webhook-signature*) printf '%s\n%s\n%s\n' "$ID" "$TSH" "$bad" >"$T/h2";;
    webhook-timestamp*) printf '%s\n%s\nwebhook-signature: v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=\n' "$ID" "$bad" >"$T/h2";;
    *) printf '%s\n' "$bad" >"$T/h2";;
    esac
    verify_with 1 "malformed $i: $bad" "$T/h2" "$T/p1" --secret "$S1" --now 1700000000
    has "bad_format" "malformed $i: $bad"
done <<'EOF_BAD'
webhook-signature: v1
webhook-signature: v1,
webhook-signature: nonsense
webhook-signature: v1,%%%%
webhook-signature: v1,YWJj
webhook-signature:
webhook-timestamp: yesterday
webhook-timestamp: -1
webhook-timestamp: 1.5
X-Hub-Signature-256: sha256=nothex
X-Hub-Signature-256: 757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17
Stripe-Signature: t=soon,v1=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17
Stripe-Signature: v1=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17
Stripe-Signature: t=1700000000,v1=abc
Stripe-Signature: garbage
EOF_BAD
printf '%s\n%s\n%s\n%s\n' "$ID" "$TSH" "webhook-signature: v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=" \
    "webhook-signature: v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=" >"$T/h2"
verify_with 1 "signature header twice" "$T/h2" "$T/p1" --secret "$S1" --now 1700000000
has "bad_format" "twice"
# A very long header is refused, not a crash.
long=$(head -c 100000 /dev/zero | tr '\0' 'A')
printf 'webhook-id: msg_1\nwebhook-timestamp: 1700000000\nwebhook-signature: v1,%s\n' "$long" >"$T/h2"
verify_with 1 "huge signature" "$T/h2" "$T/p1" --secret "$S1" --now 1700000000
has "bad_format" "huge"

# ---- json -------------------------------------------------------------------
sign_to "$T/h" standard "$T/p1" "$S1"
n=$((n + 1))
( set --; while IFS= read -r l; do set -- "$@" --header "$l"; done <"$T/h"
  exec "$KG" --json webhook verify --secret "$S1" --now 1700000999 "$@" <"$T/p1" ) >"$T/out" 2>&1
[ $? -eq 1 ] || fail "json invalid exit"
has '"valid":false,"reason":"timestamp_too_old"' "json"
expect 0 "sign --json" -- sh -c "'$KG' --json webhook sign --scheme stripe --secret x --timestamp 5 <'$T/p1'"
has '{"Stripe-Signature":"t=5,v1=' "sign json"

# ---- usage errors: exit 2 ------------------------------------------------------
expect 2 "no subcommand" -- "$KG" webhook
expect 2 "unknown subcommand" -- "$KG" webhook frobnicate
expect 2 "sign without secret" -- sh -c "'$KG' webhook sign --scheme standard <'$T/p1'"
has "--secret" "sign without secret"
expect 2 "sign unknown scheme" -- sh -c "'$KG' webhook sign --scheme nosuch --secret x <'$T/p1'"
expect 2 "sign bad timestamp" -- sh -c "'$KG' webhook sign --scheme standard --secret $S1 --timestamp soon <'$T/p1'"
expect 2 "sign bad id" -- sh -c "'$KG' webhook sign --scheme standard --secret $S1 --id a.b <'$T/p1'"
expect 2 "sign with a public key" -- sh -c "'$KG' webhook sign --scheme standard --secret $PK <'$T/p1'"
has "whpk_" "public key cannot sign"
expect 2 "sign with a non-standard secret" -- sh -c "'$KG' webhook sign --scheme standard --secret plain <'$T/p1'"
expect 2 "verify without headers" -- sh -c "'$KG' webhook verify --secret $S1 <'$T/p1'"
expect 2 "verify header without colon" -- sh -c "'$KG' webhook verify --secret $S1 --header nocolon <'$T/p1'"
expect 2 "verify bad tolerance" -- sh -c "'$KG' webhook verify --secret $S1 --header 'a: b' --tolerance soon <'$T/p1'"
expect 2 "verify unknown option" -- "$KG" webhook verify --frob
expect 2 "verify --id is for sign" -- "$KG" webhook verify --secret x --header 'a: b' --id x
sign_to "$T/h" standard "$T/p1" "$S1"
verify_with 2 "verify with an unusable secret" "$T/h" "$T/p1" --secret plain --now 1700000000
has "whsec_" "unusable secret"

# ---- the policy's choice ---------------------------------------------------------
cat >"$T/policy.yaml" <<EOF_POL
credential:
  - {module: bearer}
keystore:
  - {module: file, options: {path: keys.yaml}}
plans:
  free: {}
signers:
  - stripe
  - standard
EOF_POL
expect 0 "sign with the policy's signer" -- sh -c "'$KG' --config '$T/policy.yaml' webhook sign --secret $S1 --timestamp 1700000000 <'$T/p1'"
has "Stripe-Signature: t=1700000000,v1=" "policy signer"
sed '/signers:/,$d' "$T/policy.yaml" >"$T/nosigners.yaml"
expect 2 "policy without signers" -- sh -c "'$KG' --config '$T/nosigners.yaml' webhook sign --secret $S1 <'$T/p1'"
has "signers" "policy without signers"
printf 'signers: [nosuch]\n' >>"$T/nosigners.yaml"
expect 2 "policy with an unknown signer" -- sh -c "'$KG' --config '$T/nosigners.yaml' webhook sign --secret $S1 <'$T/p1'"
has "nosigners.yaml:7:" "unknown signer position"

echo "$n webhook CLI checks, $fails failed"
[ "$fails" -eq 0 ]
