#!/bin/sh
# The ldap key store against two real slapd servers on loopback:
#   A: cn=config built from the shipped conf/ldap/keygate.ldif, StartTLS
#      with a certificate from a CA this test makes, an ldapi:// socket;
#   B: slapd.conf with the shipped conf/ldap/keygate.schema, no TLS.
# check_ldap covers lookups (active, revoked, expired, multi-valued
# permissions and networks through ipacl/scope, injection strings),
# failover and failback, StartTLS, SASL EXTERNAL, a directory stopped
# and started mid-run.  Then the CLI: key management through a writable
# bind, and a clear "read-only" without one.
set -u
B=${KEYGATE_BUILDDIR:-.}
KEYGATE_SRCDIR=${KEYGATE_SRCDIR:-.}
export KEYGATE_SRCDIR
. "$KEYGATE_SRCDIR/tests/integration/slapd_env.sh"

slapd_begin

slapd_make_ca "$KG_LDAP_TMP/tls" || { echo "FAIL - openssl could not make the test CA"; exit 1; }
PA=$(free_port)
PB=$(free_port)
while [ "$PB" = "$PA" ]; do PB=$(free_port); done
PD=$(free_port)
slapd_setup a "$PA" config "$KG_LDAP_TMP/tls" || { echo "FAIL - slapd a setup"; exit 1; }
slapd_setup b "$PB" conf || { echo "FAIL - slapd b setup"; exit 1; }
slapd_start a || exit 1
slapd_start b || exit 1

# The control script check_ldap uses to stop and start the servers.
cat >"$KG_LDAP_TMP/ctl" <<EOF
#!/bin/sh
KEYGATE_SRCDIR='$KEYGATE_SRCDIR'; KG_LDAP_TMP='$KG_LDAP_TMP'
export KEYGATE_SRCDIR KG_LDAP_TMP
. "\$KEYGATE_SRCDIR/tests/integration/slapd_env.sh"
case "\$1" in
    stop) slapd_stop "\$2" ;;
    start) slapd_start "\$2" ;;
    pause) slapd_pause "\$2" ;;
    resume) slapd_resume "\$2" ;;
    ensure) slapd_ensure "\$2" ;;
    *) exit 2 ;;
esac
EOF
chmod +x "$KG_LDAP_TMP/ctl"

KG_LDAP_A=$(cat "$KG_LDAP_TMP/a/uri")
KG_LDAP_B=$(cat "$KG_LDAP_TMP/b/uri")
KG_LDAP_DEAD="ldap://127.0.0.1:$PD/"
KG_LDAP_A_LDAPI=$(cat "$KG_LDAP_TMP/a/ldapi_uri")
KG_LDAP_A_LDAPS=$(cat "$KG_LDAP_TMP/a/ldaps_uri")
KG_LDAP_CA="$KG_LDAP_TMP/tls/ca.crt"
KG_LDAP_OTHER_CA="$KG_LDAP_TMP/tls/other.crt"
KG_LDAP_CTL="$KG_LDAP_TMP/ctl"
export KG_LDAP_A KG_LDAP_B KG_LDAP_DEAD KG_LDAP_A_LDAPI KG_LDAP_A_LDAPS KG_LDAP_CA KG_LDAP_OTHER_CA KG_LDAP_CTL

if "$B/tests/integration/check_ldap"; then
    ok "check_ldap"
else
    bad "check_ldap"
fi
# Whatever a failed test left stopped or paused: the CLI's turn.
slapd_ensure a
slapd_ensure b

# ---- the CLI: key management through the directory ----------------------
KG="$B/tools/keygate"
policy() {  # policy FILE BIND_DN WRITABLE [extra option lines]
    f=$1 dn=$2 w=$3
    shift 3
    {
        echo "credential:"
        echo "  - {module: bearer, control: optional}"
        echo "  - {module: header, control: optional}"
        echo "keystore:"
        echo "  - module: ldap"
        echo "    control: required"
        echo "    cache: {ttl: 30s, negative_ttl: 5s}"
        echo "    options:"
        echo "      uris: [$KG_LDAP_A]"
        echo "      base_dn: ou=apikeys,dc=example,dc=com"
        echo "      bind_dn: $dn"
        echo "      writable: $w"
        for l in "$@"; do echo "      $l"; done
        echo "plans:"
        echo "  free:"
        echo "    priority: 0"
        echo "  pro:"
        echo "    account:"
        echo "      - {module: ipacl, control: requisite}"
        # keys of this plan may hold permissions (keygate key create
        # refuses them on a plan that runs no scope)
        echo "      - {module: scope, control: requisite, options: {unmapped: allow, routes: {'POST /v1/jobs': jobs:write}}}"
    } >"$f"
}
RW=cn=keygate-rw,ou=services,dc=example,dc=com
RO=cn=keygate,ou=services,dc=example,dc=com
# The password from the environment (${ENV}) or from a file.
KG_TEST_LDAP_PW=writepw
export KG_TEST_LDAP_PW
policy "$KG_LDAP_TMP/rw.yaml" "$RW" true 'bind_password: ${KG_TEST_LDAP_PW}' \
    "audit_file: $KG_LDAP_TMP/audit.jsonl"
printf 'readpw\n' >"$KG_LDAP_TMP/ro.pw"
policy "$KG_LDAP_TMP/ro.yaml" "$RO" false "bind_password_file: $KG_LDAP_TMP/ro.pw"
policy "$KG_LDAP_TMP/ro-claims-rw.yaml" "$RO" true "bind_password_file: $KG_LDAP_TMP/ro.pw"

out=$($KG --config "$KG_LDAP_TMP/rw.yaml" --json key create --name cli-key --plan pro \
      --permission scrape:read --permission jobs:write --allow-ip 10.9.0.0/16 \
      --allow-ip 2001:db8:9::/48 2>&1)
rc=$?
KEY=$(printf '%s\n' "$out" | sed -n 's/.*"key":"\([^"]*\)".*/\1/p')
ID=$(printf '%s\n' "$out" | sed -n 's/.*"id":"\([^"]*\)".*/\1/p')
if [ $rc -eq 0 ] && [ -n "$KEY" ] && [ -n "$ID" ]; then ok "key create writes an entry ($ID)"; else bad "key create: $out"; fi

entry=$(ldapsearch -x -LLL -H "$KG_LDAP_A" -D cn=admin,dc=example,dc=com -w secret \
        -b ou=apikeys,dc=example,dc=com "(apiKeyId=$ID)" 2>&1)
printf '%s\n' "$entry" | grep -q '^apiKeyPermission: jobs:write' &&
printf '%s\n' "$entry" | grep -q '^apiKeyAllowedCidr: 2001:db8:9::/48' &&
printf '%s\n' "$entry" | grep -q '^objectClass: apiKey' &&
printf '%s\n' "$entry" | grep -q "^apiKeyPrefix: $(printf '%s' "$KEY" | cut -c1-8)" &&
    ok "the entry holds the record (multi-valued attributes)" || bad "entry: $entry"
if printf '%s\n' "$entry" | grep -q -- "$KEY"; then bad "the key itself is in the directory"; else ok "only the hash is stored"; fi

out=$($KG --config "$KG_LDAP_TMP/ro.yaml" check --ip 10.9.1.1 --header "Authorization: Bearer $KEY" 2>&1)
case "$out" in "1 allowed 200"*) ok "the new key is allowed (read-only bind, password file)" ;; *) bad "check: $out" ;; esac
out=$($KG --config "$KG_LDAP_TMP/ro.yaml" check --ip 192.0.2.1 --header "Authorization: Bearer $KEY" 2>&1)
case "$out" in *"403 ip_not_allowed"*) ok "outside its networks: 403" ;; *) bad "check from outside: $out" ;; esac
out=$($KG --config "$KG_LDAP_TMP/ro.yaml" key list 2>&1)
printf '%s\n' "$out" | grep -q "$ID" && printf '%s\n' "$out" | grep -q k_active &&
    ok "key list reads the directory" || bad "key list: $out"
out=$($KG --config "$KG_LDAP_TMP/ro.yaml" key show "$ID" 2>&1)
printf '%s\n' "$out" | grep -q 'scrape:read jobs:write' && ok "key show" || bad "key show: $out"

# (options before the id: `key update ID --opt` trips the CLI's getopt)
out=$($KG --config "$KG_LDAP_TMP/rw.yaml" key update --clear-ips --allow-ip 192.0.2.0/24 "$ID" 2>&1)
[ $? -eq 0 ] || bad "key update: $out"
out=$($KG --config "$KG_LDAP_TMP/ro.yaml" check --ip 192.0.2.1 --header "Authorization: Bearer $KEY" 2>&1)
case "$out" in "1 allowed 200"*) ok "key update replaced the networks" ;; *) bad "after update: $out" ;; esac

out=$($KG --config "$KG_LDAP_TMP/rw.yaml" key revoke "$ID" 2>&1)
[ $? -eq 0 ] || bad "key revoke: $out"
out=$($KG --config "$KG_LDAP_TMP/ro.yaml" check --ip 192.0.2.1 --header "Authorization: Bearer $KEY" 2>&1)
case "$out" in *"401 key_revoked"*) ok "key revoke reaches the directory" ;; *) bad "after revoke: $out" ;; esac

# The audit log: a JSON-lines file named by audit_file (docs/audit.md):
# the create, the update and the revoke, neither the key nor its hash.
out=$($KG --config "$KG_LDAP_TMP/rw.yaml" audit --json --target "$ID" 2>&1)
n=$(printf '%s\n' "$out" | grep -c '"action":"key\.')
if [ "$n" -eq 3 ] && printf '%s\n' "$out" | sed -n 2p | grep -q '"action":"key.revoke".*"status":{"before":"active","after":"revoked"}' &&
   printf '%s\n' "$out" | sed -n 4p | grep -q '"action":"key.create"'; then
    ok "the changes are audited in audit_file, newest first"
else
    bad "audit: $out"
fi
hash=$(printf '%s' "$KEY" | sha256sum | cut -d' ' -f1)
if grep -q -e "$KEY" -e "$hash" "$KG_LDAP_TMP/audit.jsonl"; then bad "the audit file holds the key or its hash"; else ok "no key nor hash in the audit file"; fi
out=$($KG --config "$KG_LDAP_TMP/ro.yaml" audit 2>&1)
if [ $? -ne 0 ] && printf '%s\n' "$out" | grep -q "no audit log unless its audit_file"; then ok "no audit_file: keygate audit says why"; else bad "audit without audit_file: $out"; fi

# A rotation links the two keys in the directory (apiKeyReplacedBy,
# apiKeyReplaces), and key show / list say so (issue 23 item 4).
out=$($KG --config "$KG_LDAP_TMP/rw.yaml" --json key create --name rotated --plan free 2>&1)
RID=$(printf '%s\n' "$out" | sed -n 's/.*"id":"\([^"]*\)".*/\1/p')
out=$($KG --config "$KG_LDAP_TMP/rw.yaml" --json key rotate "$RID" --grace 1h 2>&1)
NID=$(printf '%s\n' "$out" | sed -n 's/.*"key":"[^"]*","id":"\([^"]*\)".*/\1/p')
old=$(ldapsearch -x -LLL -H "$KG_LDAP_A" -D cn=admin,dc=example,dc=com -w secret \
      -b ou=apikeys,dc=example,dc=com "(apiKeyId=$RID)" apiKeyReplacedBy 2>&1)
new=$(ldapsearch -x -LLL -H "$KG_LDAP_A" -D cn=admin,dc=example,dc=com -w secret \
      -b ou=apikeys,dc=example,dc=com "(apiKeyId=$NID)" apiKeyReplaces 2>&1)
if [ -n "$NID" ] && printf '%s\n' "$old" | grep -q "^apiKeyReplacedBy: $NID" &&
   printf '%s\n' "$new" | grep -q "^apiKeyReplaces: $RID"; then
    ok "a rotation links the two entries"
else
    bad "rotation link: $out / $old / $new"
fi
out=$($KG --config "$KG_LDAP_TMP/ro.yaml" key show "$RID" 2>&1)
printf '%s\n' "$out" | grep -q '^status: *rotating' && printf '%s\n' "$out" | grep -q "^replaced by: $NID" &&
    ok "key show: rotating, replaced by the new key" || bad "key show after rotate: $out"

# Read-only: said clearly, nothing written.
out=$($KG --config "$KG_LDAP_TMP/ro.yaml" key create --name nope --plan free 2>&1)
rc=$?
if [ $rc -ne 0 ] && printf '%s\n' "$out" | grep -q 'read-only'; then ok "read-only store says so"; else bad "read-only create: rc=$rc $out"; fi
out=$($KG --config "$KG_LDAP_TMP/ro-claims-rw.yaml" key create --name nope --plan free 2>&1)
rc=$?
if [ $rc -ne 0 ] && printf '%s\n' "$out" | grep -q 'no write access'; then ok "a bind without write rights is read-only"; else bad "no-rights create: rc=$rc $out"; fi
n=$(ldapsearch -x -LLL -H "$KG_LDAP_A" -D cn=admin,dc=example,dc=com -w secret \
    -b ou=apikeys,dc=example,dc=com "(apiKeyName=nope)" dn 2>/dev/null | grep -c '^dn:')
[ "$n" -eq 0 ] && ok "nothing was written" || bad "$n entries named nope"

# Injection strings through the CLI: unknown keys, not errors.
for k in '*' '*)(objectClass=*' 'whizo_*'; do
    out=$($KG --config "$KG_LDAP_TMP/ro.yaml" check --header "X-API-Key: $k" 2>&1)
    case "$out" in "1 denied 401 unauthorized"*) ok "'$k' is an unknown key" ;; *) bad "'$k': $out" ;; esac
done

# The password never reaches an error message.
policy "$KG_LDAP_TMP/badpw.yaml" "$RO" false 'bind_password: hunter2-not-logged'
out=$($KG --config "$KG_LDAP_TMP/badpw.yaml" key list 2>&1)
rc=$?
if [ $rc -ne 0 ] && printf '%s\n' "$out" | grep -q 'Invalid credentials'; then ok "a refused bind is reported"; else bad "bad password: rc=$rc $out"; fi
printf '%s\n' "$out" | grep -q hunter2 && bad "the password was printed" || ok "the password is not printed"

# ---- a backend failure says why (issue 16 item 8) ------------------------
# A CA that did not sign A's certificate: libldap (GnuTLS) says only
# "Connect error ((unknown error code))" (StartTLS) or "Can't contact
# LDAP server" (ldaps://); the plugin names the certificate problem.
for mode in starttls ldaps; do
    if [ $mode = ldaps ]; then u=$KG_LDAP_A_LDAPS; else u=$KG_LDAP_A; fi
    policy "$KG_LDAP_TMP/wrongca-$mode.yaml" "$RO" false "bind_password_file: $KG_LDAP_TMP/ro.pw" \
        "tls: $mode" "ca_file: $KG_LDAP_OTHER_CA"
    sed -i "s|uris: \[.*\]|uris: [$u]|" "$KG_LDAP_TMP/wrongca-$mode.yaml"
    out=$($KG --config "$KG_LDAP_TMP/wrongca-$mode.yaml" key list 2>&1 >/dev/null)
    if printf '%s\n' "$out" | grep -q "did not verify against ca_file $KG_LDAP_OTHER_CA: unable to get local issuer certificate (it is 'CN=localhost', issued by 'CN=keygate test CA')" &&
       ! printf '%s\n' "$out" | grep -q -e 'unknown error code' -e "Can't contact"; then
        ok "$mode with a wrong CA: the CLI names the certificate problem"
    else
        bad "$mode with a wrong CA: $out"
    fi
done
backend_says_why "keygated, StartTLS with a wrong CA" "$KG_LDAP_TMP/wrongca-starttls.yaml" \
    "$KEY" "keygated: $KG_LDAP_A: TLS: the server's certificate did not verify" \
    "$KG_LDAP_TMP/keygated.err"
backend_says_why "keygated, ldaps with a wrong CA" "$KG_LDAP_TMP/wrongca-ldaps.yaml" \
    "$KEY" "keygated: $KG_LDAP_A_LDAPS: TLS: the server's certificate did not verify" \
    "$KG_LDAP_TMP/keygated.err"
# A bind refused says so, in keygated's log too.
backend_says_why "keygated, a bind refused" "$KG_LDAP_TMP/badpw.yaml" "$KEY" \
    "keygated: $KG_LDAP_A: bind as '$RO' failed: Invalid credentials" "$KG_LDAP_TMP/keygated.err"

# keygated with the primary hung: tests/integration/test_ldap_hung.sh.

finish
