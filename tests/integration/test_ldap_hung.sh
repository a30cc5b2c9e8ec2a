#!/bin/sh
# keygated with an LDAP server that hangs (SIGSTOP: it accepts
# connections and never answers), issue 16 item 7:
# - a cached key is answered at once while other requests' lookups wait
#   on the hung server, on the same worker thread (--threads 1): those
#   lookups run on the lookup threads (tools/keygated_defer.c), their
#   connections suspended;
# - the requests whose lookups met the hung server are answered by the
#   second server after one search_timeout;
# - SIGTERM while lookups hang: keygated stops cleanly;
# - an ldaps:// server that hangs in the TLS handshake costs one
#   network_timeout, not forever.
set -u
B=${KEYGATE_BUILDDIR:-.}
KEYGATE_SRCDIR=${KEYGATE_SRCDIR:-.}
export KEYGATE_SRCDIR
. "$KEYGATE_SRCDIR/tests/integration/slapd_env.sh"

[ -x "$B/tools/keygated" ] || { echo "SKIP: keygated not built (configure --with-microhttpd)"; exit 77; }
slapd_begin

slapd_make_ca "$KG_LDAP_TMP/tls" || { echo "FAIL - openssl could not make the test CA"; exit 1; }
PA=$(free_port)
PB=$(free_port)
while [ "$PB" = "$PA" ]; do PB=$(free_port); done
slapd_setup a "$PA" config "$KG_LDAP_TMP/tls" || { echo "FAIL - slapd a setup"; exit 1; }
slapd_setup b "$PB" conf || { echo "FAIL - slapd b setup"; exit 1; }
slapd_start a || exit 1
slapd_start b || exit 1
A=$(cat "$KG_LDAP_TMP/a/uri")
BURI=$(cat "$KG_LDAP_TMP/b/uri")
A_LDAPS=$(cat "$KG_LDAP_TMP/a/ldaps_uri")
KG="$B/tools/keygate"
RW=cn=keygate-rw,ou=services,dc=example,dc=com
RO=cn=keygate,ou=services,dc=example,dc=com
printf 'readpw\n' >"$KG_LDAP_TMP/ro.pw"
printf 'writepw\n' >"$KG_LDAP_TMP/rw.pw"

# policy FILE URIS BIND_DN PWFILE [option lines]: writable
policy() { slapd_policy "$@" "writable: true"; }
policy "$KG_LDAP_TMP/rw.yaml" "$A" "$RW" "$KG_LDAP_TMP/rw.pw"
new_key() {
    $KG --config "$KG_LDAP_TMP/rw.yaml" --json key create --name "$1" --plan free 2>&1 |
        sed -n 's/.*"key":"\([^"]*\)".*/\1/p'
}
# Keys on A only: with A hung, B answers 401 for those not cached.
HKEY=$(new_key hung-cached)
K1=$(new_key hung-1)
K2=$(new_key hung-2)
K3=$(new_key hung-3)
K4=$(new_key hung-4)
[ -n "$HKEY" ] && [ -n "$K4" ] && ok "keys created on A" || { bad "key create"; finish; }

# check PORT KEY: "CODE SECONDS"
check() {
    curl -s -o /dev/null -w '%{http_code} %{time_total}' --max-time 30 \
        -H "Authorization: Bearer $2" "http://127.0.0.1:$1/check"
}
# lt A B: A < B (decimal seconds)
lt() { awk -v a="$1" -v b="$2" 'BEGIN { exit !(a < b) }'; }

# ---- a cached key while lookups hang ----------------------------------------
# One worker thread: every connection is its.  search_timeout 2 s; four
# clients whose keys are not cached meet the hung A at once (two lookup
# threads: two of them queue behind the first two), while a cached key
# is asked for five times.
policy "$KG_LDAP_TMP/hung.yaml" "$A, $BURI" "$RO" "$KG_LDAP_TMP/ro.pw" \
    "network_timeout: 2s" "search_timeout: 2s" "retry: 30s"
keygated_bg "$KG_LDAP_TMP/hung.err" --config "$KG_LDAP_TMP/hung.yaml" \
    --listen 127.0.0.1:0 --threads 1 --lookup-threads 2 --access-log off
port=$KGB_PORT
first=$(check "$port" "$HKEY")          # cached from now on; A pooled
[ "${first%% *}" = 200 ] && ok "the key to cache: 200" || bad "the key to cache: $first"
slapd_pause a
pids=
for k in "$K1" "$K2" "$K3" "$K4"; do
    check "$port" "$k" >"$KG_LDAP_TMP/miss.$k" &
    pids="$pids $!"
done
sleep 0.3
worst=0 codes=
for i in 1 2 3 4 5; do
    r=$(check "$port" "$HKEY")
    codes="$codes ${r%% *}"
    lt "$worst" "${r#* }" && worst=${r#* }
done
# shellcheck disable=SC2086
wait $pids
misses=
for k in "$K1" "$K2" "$K3" "$K4"; do misses="$misses $(cat "$KG_LDAP_TMP/miss.$k")"; done
echo "# cached key while A hangs:$codes, the slowest in $worst s; the lookups (code, s):$misses"
if [ "$codes" = " 200 200 200 200 200" ] && lt "$worst" 0.5; then
    ok "a cached key is answered in $worst s (< 0.5, search_timeout 2 s) while 4 lookups hang on the same worker"
else
    bad "cached key while lookups hang:$codes, slowest $worst s (want 200 x5 within 0.5 s)"
fi
# Each lookup meets A's silence once (its pooled connection, 2 s), then
# A is marked down and B answers (401: the keys are on A only).
nok=0
for m in $misses; do
    case $m in 401) nok=$((nok + 1)) ;; esac
done
slow=$(printf '%s\n' $misses | awk 'NR % 2 == 0 && $1 > m { m = $1 } END { print m + 0 }')
if [ $nok -eq 4 ] && lt "$slow" 4.5; then
    ok "the 4 lookups that met the hung server: 401 from B, the slowest after $slow s"
else
    bad "lookups with A hung:$misses (want 401 x4 within 4.5 s)"
fi
r=$(check "$port" "$K1")
c=${r%% *} s=${r#* }
[ "$c" = 401 ] && lt "$s" 0.5 && ok "A marked down: the next lookup goes to B at once ($s s)" \
    || bad "after the hang: $r"
slapd_resume a
# Exits 0 (and, under ASan, with nothing leaked by the checks that went
# to the lookup threads).
kill -TERM "$KGB_PID"
if bg_wait "$KGB_PID"; then ok "keygated exits 0 on SIGTERM"; else bad "keygated exit: $?: $(tail -20 "$KG_LDAP_TMP/hung.err")"; fi

# The same with the lookups on the worker thread (--lookup-threads 0,
# keygated before this change): the cached key waits for them.
slapd_ensure a
keygated_bg "$KG_LDAP_TMP/inline.err" --config "$KG_LDAP_TMP/hung.yaml" \
    --listen 127.0.0.1:0 --threads 1 --lookup-threads 0 --access-log off
port=$KGB_PORT
check "$port" "$HKEY" >/dev/null
slapd_pause a
check "$port" "$K2" >/dev/null &
pids=$!
sleep 0.3
r=$(check "$port" "$HKEY")
wait $pids
slapd_resume a
bg_stop "$KGB_PID"
echo "# --lookup-threads 0: the cached key while a lookup hangs: $r"
lt 1 "${r#* }" && ok "--lookup-threads 0: the cached key waited ${r#* } s (the stall this removes)" \
    || bad "--lookup-threads 0: the cached key did not wait ($r): is the test still seeing the stall?"

# SIGTERM while lookups hang (--drain 1, one lookup thread: one lookup
# waits on A, two queue behind it): keygated stops within the drain and
# the running lookup's timeout, the queued ones resumed unchecked, and
# exits 0 (libmicrohttpd must not be stopped with a connection suspended).
slapd_ensure a
keygated_bg "$KG_LDAP_TMP/term.err" --config "$KG_LDAP_TMP/hung.yaml" \
    --listen 127.0.0.1:0 --threads 1 --lookup-threads 1 --drain 1 --access-log off
port=$KGB_PORT
check "$port" "$HKEY" >/dev/null
slapd_pause a
pids=
for k in "$K2" "$K3" "$K4"; do
    check "$port" "$k" >/dev/null &
    pids="$pids $!"
done
sleep 0.3
t0=$(date +%s.%N)
kill -TERM "$KGB_PID"
bg_wait "$KGB_PID"
rc=$?
t1=$(date +%s.%N)
# shellcheck disable=SC2086
wait $pids
slapd_resume a
took=$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.2f", b - a }')
[ $rc -eq 0 ] && lt "$took" 5 && ok "SIGTERM with lookups hanging: exit 0 after $took s (--drain 1, search_timeout 2 s)" \
    || bad "SIGTERM with lookups hanging: rc $rc after $took s: $(tail -5 "$KG_LDAP_TMP/term.err")"

# ---- ldaps:// hung in the TLS handshake ---------------------------------------
# The TCP connection is made (the kernel accepts for the stopped
# server); the TLS handshake then waits for a ServerHello that never
# comes.  network_timeout bounds it.
slapd_ensure a
policy "$KG_LDAP_TMP/ldaps.yaml" "$A_LDAPS" "$RO" "$KG_LDAP_TMP/ro.pw" \
    "network_timeout: 1s" "search_timeout: 1s" "retry: 30s" "pool: 0" \
    "ca_file: $KG_LDAP_TMP/tls/ca.crt"
keygated_bg "$KG_LDAP_TMP/ldaps.err" --config "$KG_LDAP_TMP/ldaps.yaml" \
    --listen 127.0.0.1:0 --access-log off
port=$KGB_PORT
r=$(check "$port" "$K4")
[ "${r%% *}" = 200 ] && ok "ldaps: a check through A's ldaps port" || bad "ldaps check: $r"
slapd_pause a
# The key is not cached, and no connection is kept (pool: 0): the
# lookup opens one, whose handshake meets A's silence.
r=$(check "$port" "$K3")
slapd_resume a
bg_stop "$KGB_PID"
echo "# ldaps, A hung: $r; $(grep ldaps "$KG_LDAP_TMP/ldaps.err" | tail -1)"
# Bounded, not spinning: before, the lookup never ended (curl gave up
# after 30 s: 000).  5 x network_timeout leaves room for a loaded machine.
if [ "${r%% *}" = 503 ] && lt "${r#* }" 5 &&
   grep -q "no TLS handshake within network_timeout, 1000 ms" "$KG_LDAP_TMP/ldaps.err"; then
    ok "ldaps, A hung in the TLS handshake: 503 after ${r#* } s (network_timeout 1 s), and the log says why"
else
    bad "ldaps, A hung: $r (want 503 within 5 s): $(tail -3 "$KG_LDAP_TMP/ldaps.err")"
fi

finish
