# lib.sh - shared by keygated's shell tests: a scratch folder, keygated
# on a free loopback port, curl helpers, TAP-ish ok/bad lines.
# Sourced; the test sets POLICY (a file) before start_keygated.
set -u
B=${KEYGATE_BUILDDIR:-.}
S=${KEYGATE_SRCDIR:-.}
KEYGATED="$B/tools/keygated"
KEYGATE="$B/tools/keygate"
T=$(mktemp -d "${TMPDIR:-/tmp}/keygated-test.XXXXXX")
KEYGATE_STATE_DIR=$T
export KEYGATE_STATE_DIR
fail=0
npass=0
KGD_PID=

ok() { npass=$((npass + 1)); echo "ok - $1"; }
bad() { fail=$((fail + 1)); echo "FAIL - $1"; }

lib_cleanup() {
    if [ -n "$KGD_PID" ] && kill -0 "$KGD_PID" 2>/dev/null; then
        kill -TERM "$KGD_PID" 2>/dev/null
        wait "$KGD_PID" 2>/dev/null
    fi
    [ -n "${EXTRA_CLEANUP:-}" ] && eval "$EXTRA_CLEANUP"
    rm -rf "$T"
}
trap lib_cleanup EXIT
trap 'exit 1' INT TERM

[ -x "$KEYGATED" ] || { echo "keygated was not built (no libmicrohttpd)"; exit 77; }
command -v curl >/dev/null || { echo "curl is needed"; exit 1; }

# A free TCP port on 127.0.0.1 (for servers that cannot take port 0).
free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# start_keygated [keygated options...]: runs it on 127.0.0.1:0 with the
# policy in $POLICY; sets KGD_PID, KGD_PORT, KGD.
start_keygated() {
    : >"$T/keygated.err"
    "$KEYGATED" --config "$POLICY" --listen 127.0.0.1:0 \
        --access-log "$T/access.log" "$@" 2>>"$T/keygated.err" &
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
    i=0
    until grep -q -- "$1" "$T/keygated.err" || [ $i -ge 200 ]; do sleep 0.05; i=$((i + 1)); done
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

finish() {
    echo "$npass passed, $fail failed"
    [ "$fail" -eq 0 ]
    exit $?
}
