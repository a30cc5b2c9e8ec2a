#!/bin/sh
# The ldap key store's `referrals` option against two real slapd servers
# on loopback (slapd.conf form, shipped keygate.schema, no TLS):
#   A: ou=apikeys,dc=example,dc=com is a referral object (objectClass
#      referral + extensibleObject) whose ref names the same DN on B;
#   B: the key entries, under ou=apikeys and ou=team,ou=apikeys.
# The store always binds to A as cn=keygate.  Three search bases give the
# two shapes a referral comes in:
#   at     base_dn ou=apikeys,...          A answers "referral" (result 10)
#   under  base_dn ou=team,ou=apikeys,...  the same, the ref's DN rewritten
#   above  base_dn dc=example,dc=com       A answers success with a search
#                                          continuation reference
# Asserted through `keygate check`: with `referrals: true` the key on B is
# allowed with its plan, an unknown key is 401; with `referrals: false`
# (the default) both are 503 auth_unavailable, never 401.  Then B refusing
# anonymous reads (it still lets cn=keygate read: the chase does not send
# the store's credentials), B stopped, and a referral naming itself: 503.
set -u
B=${KEYGATE_BUILDDIR:-.}
KEYGATE_SRCDIR=${KEYGATE_SRCDIR:-.}
export KEYGATE_SRCDIR
. "$KEYGATE_SRCDIR/tests/integration/slapd_env.sh"

slapd_begin

T=$KG_LDAP_TMP
ADMIN="-D cn=admin,dc=example,dc=com -w secret"
RO=cn=keygate,ou=services,dc=example,dc=com
RW=cn=keygate-rw,ou=services,dc=example,dc=com
PA=$(free_port)
PB=$(free_port)
while [ "$PB" = "$PA" ]; do PB=$(free_port); done
slapd_setup a "$PA" conf || { echo "FAIL - slapd a setup"; exit 1; }
slapd_setup b "$PB" conf || { echo "FAIL - slapd b setup"; exit 1; }
slapd_keys_anonymous b read || { echo "FAIL - slapd b: anonymous read"; exit 1; }
printf 'dn: ou=team,ou=apikeys,dc=example,dc=com\nobjectClass: organizationalUnit\nou: team\n' >"$T/team.ldif"
slapd_load b "$T/team.ldif" || { echo "FAIL - slapd b: ou=team"; exit 1; }
slapd_start a || exit 1
slapd_start b || exit 1
UA=$(cat "$T/a/uri")
UB=$(cat "$T/b/uri")

# On A the keys' subtree is a referral to B (added without ManageDsaIT
# being needed later: the store's searches never send it).
# shellcheck disable=SC2086
ldapdelete -x -H "$UA" $ADMIN ou=apikeys,dc=example,dc=com >"$T/ref.log" 2>&1 &&
cat >"$T/ref.ldif" <<EOF &&
dn: ou=apikeys,dc=example,dc=com
objectClass: referral
objectClass: extensibleObject
ou: apikeys
ref: ldap://127.0.0.1:$PB/ou=apikeys,dc=example,dc=com
EOF
# shellcheck disable=SC2086
ldapadd -M -x -H "$UA" $ADMIN -f "$T/ref.ldif" >>"$T/ref.log" 2>&1 ||
    { cat "$T/ref.log"; echo "FAIL - the referral object on A"; exit 1; }
out=$(ldapsearch -x -H "$UA" -D "$RO" -w readpw -b ou=apikeys,dc=example,dc=com 2>&1)
case "$out" in *"result: 10 Referral"*"ref: ldap://127.0.0.1:$PB/"*) ok "A answers a referral to B" ;;
    *) bad "A's referral: $out" ;; esac

KG="$B/tools/keygate"
# policy FILE URI BASE_DN BIND_DN PASSWORD [option lines]
policy() {
    f=$1 uri=$2 base=$3 dn=$4 pw=$5
    shift 5
    {
        echo "credential:"
        echo "  - {module: bearer, control: optional}"
        echo "keystore:"
        echo "  - module: ldap"
        echo "    control: required"
        echo "    options:"
        echo "      uris: [$uri]"
        echo "      base_dn: \"$base\""
        echo "      bind_dn: $dn"
        echo "      bind_password: $pw"
        echo "      search_timeout: 1s"
        echo "      network_timeout: 1s"
        for l in "$@"; do echo "      $l"; done
        echo "plans:"
        echo "  partner:"
        echo "    priority: 3"
    } >"$f"
}
# create NAME BASE_DN: a key written straight to B; "KEY ID" on stdout.
create() {
    policy "$T/create.yaml" "$UB" "$2" "$RW" writepw "writable: true"
    o=$($KG --config "$T/create.yaml" --json key create --name "$1" --plan partner 2>&1)
    printf '%s %s\n' "$(printf '%s\n' "$o" | sed -n 's/.*"key":"\([^"]*\)".*/\1/p')" \
        "$(printf '%s\n' "$o" | sed -n 's/.*"id":"\([^"]*\)".*/\1/p')"
}
set -- $(create top ou=apikeys,dc=example,dc=com); K1=${1:-} ID1=${2:-}
set -- $(create team ou=team,ou=apikeys,dc=example,dc=com); K2=${1:-} ID2=${2:-}
set -- $(create gone ou=apikeys,dc=example,dc=com); K3=${1:-} ID3=${2:-}
if [ -n "$K1" ] && [ -n "$K2" ] && [ -n "$K3" ]; then ok "three keys created on B"; else bad "key create on B"; fi
# K3: a well-formed key that B no longer holds.
# shellcheck disable=SC2086
ldapdelete -x -H "$UB" $ADMIN "apiKeyId=$ID3,ou=apikeys,dc=example,dc=com" >/dev/null 2>&1 ||
    bad "delete $ID3"

# expect WHAT POLICY KEY PATTERN: `keygate check` prints a line matching PATTERN.
# expect DESC POLICY KEY PATTERN: the decision `keygate check` prints;
# what it says on stderr (why a server failed) is left in $T/why.
expect() {
    o=$($KG --config "$2" check --header "Authorization: Bearer $3" 2>"$T/why")
    case "$o" in $4) ok "$1" ;; *) bad "$1: $o $(cat "$T/why")" ;; esac
}
# why DESC PATTERN: the last check's stderr names the reason.
why() {
    if grep -q -- "$2" "$T/why"; then ok "$1"; else bad "$1: $(cat "$T/why")"; fi
}
ALLOWED1="1 allowed 200 ok key=$ID1 account=acct_${ID1#k_} plan=partner priority=3 *"
ALLOWED2="1 allowed 200 ok key=$ID2 account=acct_${ID2#k_} plan=partner priority=3 *"
UNAVAIL="1 denied 503 auth_unavailable*"
UNKNOWN="1 denied 401 unauthorized*"

policy "$T/direct.yaml" "$UB" ou=apikeys,dc=example,dc=com "$RO" readpw
expect "on B directly (bind as cn=keygate): allowed" "$T/direct.yaml" "$K1" "$ALLOWED1"

for shape in at under above; do
    case $shape in
        at) base=ou=apikeys,dc=example,dc=com ;;
        under) base=ou=team,ou=apikeys,dc=example,dc=com ;;
        above) base=dc=example,dc=com ;;
    esac
    policy "$T/$shape-on.yaml" "$UA" "$base" "$RO" readpw "referrals: true"
    policy "$T/$shape-off.yaml" "$UA" "$base" "$RO" readpw
    policy "$T/$shape-false.yaml" "$UA" "$base" "$RO" readpw "referrals: false"
    expect "$shape, referrals on: the key on B is allowed, plan partner" "$T/$shape-on.yaml" "$K2" "$ALLOWED2"
    [ $shape = under ] ||
        expect "$shape, referrals on: the other key too" "$T/$shape-on.yaml" "$K1" "$ALLOWED1"
    expect "$shape, referrals on: a key B does not hold is 401" "$T/$shape-on.yaml" "$K3" "$UNKNOWN"
    expect "$shape, referrals off (default): 503, not an invalid key" "$T/$shape-off.yaml" "$K2" "$UNAVAIL"
    expect "$shape, referrals: false: 503" "$T/$shape-false.yaml" "$K2" "$UNAVAIL"
    expect "$shape, referrals off: an unknown key is 503 too" "$T/$shape-off.yaml" "$K3" "$UNAVAIL"
done

# The store's key-by-id lookup (key show) follows the same rule.
out=$($KG --config "$T/above-on.yaml" key show "$ID2" 2>&1)
case "$out" in *"$ID2"*partner*) ok "key show through the referral" ;; *) bad "key show, referrals on: $out" ;; esac
out=$($KG --config "$T/above-off.yaml" key show "$ID2" 2>&1)
rc=$?
if [ $rc -ne 0 ] && printf '%s\n' "$out" | grep -q -i referral; then ok "key show, referrals off: refused, naming the referral"
else bad "key show, referrals off: rc=$rc $out"; fi

# A referral that names itself: followed five times, then 503 (a loop in
# the directory must neither hang a check nor pass for an unknown key).
cat >"$T/loop.ldif" <<EOF
dn: ou=loop,dc=example,dc=com
objectClass: referral
objectClass: extensibleObject
ou: loop
ref: ldap://127.0.0.1:$PA/ou=loop,dc=example,dc=com
EOF
# shellcheck disable=SC2086
if ldapadd -M -x -H "$UA" $ADMIN -f "$T/loop.ldif" >"$T/loop.log" 2>&1; then
    policy "$T/loop.yaml" "$UA" ou=loop,dc=example,dc=com "$RO" readpw "referrals: true"
    t0=$(date +%s)
    expect "a referral loop: 503 after the hop limit" "$T/loop.yaml" "$K1" "$UNAVAIL"
    out=$($KG --config "$T/loop.yaml" key show "$ID1" 2>&1)
    case "$out" in *"more than 5 hops"*) ok "the loop is named: more than 5 hops" ;;
        *) bad "key show in a referral loop: $out" ;; esac
    t=$(( $(date +%s) - t0 ))
    if [ "$t" -le 10 ]; then ok "the loop ends at once"; else bad "the loop took $t s"; fi
else
    cat "$T/loop.log"
    bad "the looping referral object on A"
fi

# B refuses anonymous reads of the keys; cn=keygate may still read them.
slapd_stop b
slapd_keys_anonymous b none || bad "slapd b: no anonymous read"
slapd_start b || exit 1
expect "B without anonymous read: cn=keygate still reads B directly" "$T/direct.yaml" "$K1" "$ALLOWED1"
for shape in at under above; do
    expect "$shape, B refuses anonymous reads: 503 (the chase binds anonymously)" \
        "$T/$shape-on.yaml" "$K2" "$UNAVAIL"
    why "... and says why" "^keygate: $UB: referral $UB.*: search under '.*' refused: No such object"
done

# B down: the referral cannot be followed.
slapd_stop b
for shape in at above; do
    expect "$shape, B stopped: 503" "$T/$shape-on.yaml" "$K1" "$UNAVAIL"
    why "... and says why" "^keygate: $UB: cannot connect: Can't contact LDAP server"
done

finish
