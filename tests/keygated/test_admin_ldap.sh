#!/bin/sh
# The admin API on a key store that cannot write (docs/admin-api.md,
# "Errors"): keys in a real slapd (tests/integration/slapd_env.sh), the
# operator key written with the bind that may write, then keygated on
# the same directory with a read-only bind: a revoke and a key change
# through the API are 409 read_only with a message that says why, and
# nothing is written (the key still works at /check); with the store's
# `writable: false` the same, said by keygate; with the writing bind the
# revoke goes through.
. "${KEYGATE_SRCDIR:-.}/tests/keygated/lib.sh"
KEYGATE_SRCDIR=${KEYGATE_SRCDIR:-.}
export KEYGATE_SRCDIR
"$KEYGATED" --help | grep -q -- --admin-listen \
    || { echo "SKIP: keygated was built without the admin API (jansson)"; exit 77; }
[ -f "$B/plugins/.libs/ldap.so" ] || [ -f "$B/plugins/ldap.la" ] \
    || { echo "SKIP: the ldap store was not built"; exit 77; }
. "$S/tests/integration/slapd_env.sh"
slapd_begin
# slapd_begin's trap replaces lib.sh's: both cleanups.
trap 'slapd_stop a; rm -rf "$KG_LDAP_TMP"; lib_cleanup' EXIT
PA=$(free_port)
slapd_setup a "$PA" conf >/dev/null 2>&1 || { bad "slapd setup"; finish; }
slapd_start a >/dev/null 2>&1 || { bad "slapd start"; finish; }
URI=$(cat "$KG_LDAP_TMP/a/uri")

# policy FILE BIND_DN PASSWORD WRITABLE
policy() {
    cat >"$1" <<EOF
version: 1
key_prefix: whizo
credential: [{module: bearer}]
keystore:
  - module: ldap
    control: required
    cache: {ttl: 1s, negative_ttl: 1s}
    options:
      uris: [$URI]
      base_dn: ou=apikeys,dc=example,dc=com
      bind_dn: $2
      bind_password: $3
      writable: $4
plans:
  admin:
    account:
      - module: scope
        control: requisite
        options: {unmapped: deny, routes: {"* /api/v1/**": admin}}
  pro: {}
EOF
}
policy "$T/rw.yaml" cn=keygate-rw,ou=services,dc=example,dc=com writepw true
policy "$T/ro.yaml" cn=keygate,ou=services,dc=example,dc=com readpw true
policy "$T/off.yaml" cn=keygate-rw,ou=services,dc=example,dc=com writepw false

OPS=$("$KEYGATE" --config "$T/rw.yaml" key create --plan admin --permission admin --name ops 2>"$T/err")
KEY=$("$KEYGATE" --config "$T/rw.yaml" key create --plan pro --name victim 2>>"$T/err")
[ -n "$OPS" ] && [ -n "$KEY" ] && ok "an operator key and a key in the directory" || { bad "keys: $(cat "$T/err")"; finish; }
KID=$(POLICY=$T/rw.yaml key_id_of "$KEY")

# admin_on POLICY: keygated with the admin listener; ADMIN its URL.
admin_on() {
    POLICY=$1
    start_keygated --admin-listen 127.0.0.1:0
    ADMIN="http://127.0.0.1:$(sed -n 's/.*admin API listener on 127\.0\.0\.1:\([0-9]*\).*/\1/p' "$T/keygated.err" | head -1)"
}
code_is() {
    if [ "$CODE" = "$2" ] && grep -q "\"code\":\"$3\"" "$T/b"; then ok "$1: $2 $3"; else bad "$1: $CODE $(cat "$T/b")"; fi
}

admin_on "$T/ro.yaml"
expect_status "read-only bind: the operator is who it says" 200 -H "Authorization: Bearer $OPS" "$ADMIN/api/v1/me"
req -X POST -H "Authorization: Bearer $OPS" "$ADMIN/api/v1/keys/$KID/revoke"
code_is "read-only bind: revoke" 409 read_only
body_has "... the message says why" "no write access"
req -X PATCH -H "Authorization: Bearer $OPS" -d '{"name":"renamed"}' "$ADMIN/api/v1/keys/$KID"
code_is "read-only bind: a change" 409 read_only
expect_status "nothing was written: the key still works" 200 -H "Authorization: Bearer $KEY" "$KGD/check"
req -H "Authorization: Bearer $OPS" "$ADMIN/api/v1/keys/$KID"
body_has "... and keeps its name" '"name":"victim"'
stop_keygated

admin_on "$T/off.yaml"
req -X POST -H "Authorization: Bearer $OPS" "$ADMIN/api/v1/keys/$KID/revoke"
code_is "writable: false: revoke" 409 read_only
body_has "... the message says the store is read-only" "read-only"
stop_keygated

admin_on "$T/rw.yaml"
req -X POST -H "Authorization: Bearer $OPS" "$ADMIN/api/v1/keys/$KID/revoke"
[ "$CODE" = 200 ] && grep -q '"status":"revoked"' "$T/b" && ok "the writing bind: revoke 200" || bad "rw revoke: $CODE $(cat "$T/b")"
wait_for 100 sh -c "[ \"\$(curl -s -o /dev/null -w '%{http_code}' -H 'Authorization: Bearer $KEY' $KGD/check)\" = 401 ]" \
    && ok "... refused at /check within the cache ttl" || bad "the revoked key still works"
stop_keygated
finish
