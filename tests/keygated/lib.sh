# lib.sh - shared by keygated's shell tests: a scratch folder, keygated
# on a free loopback port, curl helpers, the keys the gateway tests use.
# Sourced; the test sets POLICY (a file) before start_keygated.  The
# general helpers (ok/bad/finish, free_port, wait_for, wait_http,
# bg_start) are tests/lib.sh's.
set -u
B=${KEYGATE_BUILDDIR:-.}
S=${KEYGATE_SRCDIR:-.}
. "$S/tests/lib.sh"
KEYGATED="$B/tools/keygated"
KEYGATE="$B/tools/keygate"
T=$(mktemp -d "${TMPDIR:-/tmp}/keygated-test.XXXXXX")
KEYGATE_STATE_DIR=$T
export KEYGATE_STATE_DIR
KGD_PID=

# Servers the test started with bg_start, then keygated, then the folder.
lib_cleanup() {
    bg_stop_all
    if [ -n "$KGD_PID" ] && kill -0 "$KGD_PID" 2>/dev/null; then
        kill -TERM "$KGD_PID" 2>/dev/null
        wait "$KGD_PID" 2>/dev/null
    fi
    rm -rf "$T"
}
trap lib_cleanup EXIT
trap 'exit 1' INT TERM

[ -x "$KEYGATED" ] || { echo "keygated was not built (no libmicrohttpd)"; exit 77; }
command -v curl >/dev/null || { echo "curl is needed"; exit 1; }

# start_keygated [keygated options...]: runs it on 127.0.0.1:0 with the
# policy in $POLICY; sets KGD_PID, KGD_PORT, KGD.
start_keygated() {
    launch_keygated --config "$POLICY" --listen 127.0.0.1:0 \
        --access-log "$T/access.log" "$@"
}

# launch_keygated OPTIONS...: runs keygated with exactly these options
# (one --listen 127.0.0.1:0 among them) and waits for its port; sets
# KGD_PID, KGD_PORT, KGD.
launch_keygated() {
    : >"$T/keygated.err"
    "$KEYGATED" "$@" 2>>"$T/keygated.err" &
    KGD_PID=$!
    i=0
    KGD_PORT=
    while [ $i -lt 100 ]; do
        KGD_PORT=$(sed -n 's/.*listening on 127\.0\.0\.1:\([0-9]*\).*/\1/p' "$T/keygated.err" | head -1)
        [ -n "$KGD_PORT" ] && break
        kill -0 "$KGD_PID" 2>/dev/null || break
        sleep 0.05
        i=$((i + 1))
    done
    if [ -z "$KGD_PORT" ]; then
        echo "keygated did not start:"; cat "$T/keygated.err"
        exit 1
    fi
    KGD="http://127.0.0.1:$KGD_PORT"
}

# stop_keygated: SIGTERM; it must exit 0 with no sanitizer report.
stop_keygated() {
    kill -TERM "$KGD_PID"
    wait "$KGD_PID"
    rc=$?
    KGD_PID=
    [ "$rc" -eq 0 ] && ok "keygated exits 0 on SIGTERM" || { bad "keygated exited $rc"; cat "$T/keygated.err"; }
    if grep -q -E 'AddressSanitizer|LeakSanitizer|runtime error' "$T/keygated.err"; then
        bad "sanitizer report:"; cat "$T/keygated.err"
    fi
}

# wait_log PATTERN: until keygated's stderr has a line matching it (10 s).
wait_log() {
    wait_for 200 grep -q -- "$1" "$T/keygated.err"
}

# req [curl args...]: status into $CODE, headers $T/h, body $T/b.
req() {
    CODE=$(curl -s -o "$T/b" -D "$T/h" -w '%{http_code}' --max-time 10 "$@")
}

# expect_status DESC WANT [curl args...]
expect_status() {
    d=$1; w=$2; shift 2
    req "$@"
    if [ "$CODE" = "$w" ]; then ok "$d: $w"; else bad "$d: got $CODE, wanted $w; body: $(cat "$T/b")"; fi
}
# has_header DESC 'Name: value-prefix'  (on the last response)
has_header() {
    if tr -d '\r' <"$T/h" | grep -qi -- "^$2"; then ok "$1"; else bad "$1: no '$2' in: $(tr -d '\r' <"$T/h" | tr '\n' '|')"; fi
}
no_header() {
    if tr -d '\r' <"$T/h" | grep -qi -- "^$2"; then bad "$1: unexpected '$2'"; else ok "$1"; fi
}
body_has() {
    if grep -q -- "$2" "$T/b"; then ok "$1"; else bad "$1: body lacks '$2': $(cat "$T/b")"; fi
}
header_value() {
    tr -d '\r' <"$T/h" | sed -n "s/^$1: //Ip" | head -1
}

# new_key NAME PLAN [keygate key create options]: prints the key.
new_key() {
    n=$1; p=$2; shift 2
    "$KEYGATE" --config "$POLICY" key create --name "$n" --plan "$p" "$@" 2>/dev/null
}
key_id_of() {  # the id of the key (from the store, by its display prefix)
    "$KEYGATE" --config "$POLICY" key list | awk -v p="$(printf '%.8s' "$1")" '$2 == p { print $1 }'
}

# gateway_keys: the keys the nginx and Caddy tests send through the
# gateway, made with the shipped policy ($POLICY): FREE, PRO, REV
# (revoked), EXP (expired), IPK (only from 127.0.0.2), RO (enterprise,
# read-only permissions).
gateway_keys() {
    FREE=$(new_key free free)
    PRO=$(new_key pro pro)
    REV=$(new_key rev free)
    "$KEYGATE" --config "$POLICY" key revoke "$(key_id_of "$REV")" >/dev/null
    EXP=$(new_key old free --expires 2020-01-01)
    IPK=$(new_key ip pro --allow-ip 127.0.0.2/32)
    RO=$(new_key ro enterprise --permission '*:read')
    [ -n "$FREE" ] && [ -n "$RO" ] && ok "keys created" || bad "keys"
}

# rate_headers_once DESC: the last response has each rate-limit header
# exactly once (a gateway that adds its own to the upstream's must not
# double them).
rate_headers_once() {
    for h in X-RateLimit-Limit X-RateLimit-Remaining X-RateLimit-Reset RateLimit RateLimit-Policy; do
        if [ "$(tr -d '\r' <"$T/h" | grep -ci "^$h:")" -ne 1 ]; then
            bad "$1: rate-limit headers not once each: $(tr -d '\r' <"$T/h" | tr '\n' '|')"
            return
        fi
    done
    ok "$1"
}

# free_hour_spent URL [curl args]: FREE (10 an hour, three used) gets
# requests 4..10 through the gateway at URL and the 11th refused: 429
# with JSON, Retry-After and X-RateLimit-Remaining 0, kept from the
# upstream.
free_hour_spent() {
    fu=$1; shift
    n=4
    while [ $n -le 10 ]; do
        req "$@" -H "Authorization: Bearer $FREE" "$fu"
        [ "$CODE" = 200 ] || bad "free request $n: $CODE $(cat "$T/b")"
        n=$((n + 1))
    done
    ok "free requests 4..10 allowed"
    expect_status "11th free request in the hour" 429 "$@" -H "Authorization: Bearer $FREE" "$fu"
    body_has "11th: JSON" '{"error":{"code":"rate_limited"'
    has_header "11th: Retry-After" "Retry-After: [1-9][0-9]*$"
    has_header "11th: X-RateLimit-Remaining 0" "X-RateLimit-Remaining: 0"
    grep -q "upstream" "$T/b" && bad "429 reached the upstream" || ok "429 did not reach the upstream"
}

# gateway_denials URL: the gateway_keys that a gateway at URL must
# refuse, each with its status and code (from 127.0.0.2 / 127.0.0.3):
# revoked, expired, invalid, two keys, and IPK from another address,
# also when that address names the allowed one in X-Forwarded-For; IPK
# from its own address passes.
gateway_denials() {
    gu=$1
    expect_status "revoked key" 401 --interface 127.0.0.2 -H "Authorization: Bearer $REV" "$gu"
    body_has "revoked: JSON" '"code":"key_revoked"'
    expect_status "expired key" 401 --interface 127.0.0.2 -H "Authorization: Bearer $EXP" "$gu"
    body_has "expired: JSON" '"code":"key_expired"'
    expect_status "invalid key" 401 --interface 127.0.0.2 -H "Authorization: Bearer whizo_nope" "$gu"
    expect_status "two keys" 400 --interface 127.0.0.2 -H "Authorization: Bearer $FREE" -H "X-API-Key: $PRO" "$gu"
    body_has "two keys: JSON" '"code":"invalid_request"'
    expect_status "key used from its allowed IP" 200 --interface 127.0.0.2 -H "Authorization: Bearer $IPK" "$gu"
    expect_status "key used from another IP" 403 --interface 127.0.0.3 -H "Authorization: Bearer $IPK" "$gu"
    body_has "wrong IP: JSON" '"code":"ip_not_allowed"'
    expect_status "forged X-Forwarded-For does not help" 403 --interface 127.0.0.3 \
        -H "X-Forwarded-For: 127.0.0.2" -H "Authorization: Bearer $IPK" "$gu"
}
