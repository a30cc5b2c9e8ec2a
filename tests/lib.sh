# lib.sh - what the shell tests share: ok/bad lines and the summary, a
# free loopback port, waiting for a server to answer, and servers run in
# the background and stopped on exit.
#
# Sourced (by POSIX sh and bash scripts alike).  It only defines: no
# trap, no folder, no output, so that any script (and the helper scripts
# the tests write) may source it.  A test's own cleanup calls bg_stop_all.

fail=0
npass=0
BG_PIDS=

ok() { npass=$((npass + 1)); echo "ok - $1"; }
bad() { fail=$((fail + 1)); echo "FAIL - $1"; }

# expect DESC WANTED_RC PATTERN -- command...: ok if the command exits
# WANTED_RC and its stdout+stderr match PATTERN (grep), else bad, with
# what it said.
expect() {
    lib_desc=$1 lib_want=$2 lib_pat=$3
    shift 4
    out=$("$@" 2>&1)
    lib_rc=$?
    if [ "$lib_rc" -ne "$lib_want" ]; then bad "$lib_desc: exit $lib_rc, wanted $lib_want: $out"; return; fi
    if ! printf '%s\n' "$out" | grep -q -e "$lib_pat"; then bad "$lib_desc: output lacks '$lib_pat': $out"; return; fi
    ok "$lib_desc"
}

# json_field NAME < a one-line JSON object: the first string member NAME.
json_field() { sed -n "s/.*\"$1\":\"\([^\"]*\)\".*/\1/p"; }

# finish: the summary line; exits 0 if nothing failed, else 1.
finish() {
    echo "$npass passed, $fail failed"
    [ "$fail" -eq 0 ]
    exit $?
}

# free_port: a TCP port on 127.0.0.1 with no socket on it now, in
# 20000..49999 (so that port + 10000, a Redis Cluster bus port, is still
# a port).  A server may lose it to a race before it binds: starts that
# can fail that way retry with another port.
free_port() {
    while :; do
        lib_p=$(( 20000 + $(od -An -N2 -tu2 /dev/urandom | tr -d ' ') % 30000 ))
        if command -v ss >/dev/null 2>&1; then
            ss -Htan "sport = :$lib_p" 2>/dev/null | grep -q . && continue
        fi
        echo "$lib_p"
        return 0
    done
}

# wait_for TRIES CMD [ARGS...]: run CMD every 0.05 s until it succeeds,
# at most TRIES times.  Its status: 0 if CMD succeeded.
wait_for() {
    lib_n=$1
    shift
    while [ "$lib_n" -gt 0 ]; do
        "$@" && return 0
        lib_n=$((lib_n - 1))
        [ "$lib_n" -gt 0 ] && sleep 0.05
    done
    return 1
}

# http_status URL [CURL ARGS...]: the status code of a GET (000: no answer).
http_status() {
    lib_u=$1
    shift
    curl -s -o /dev/null -w '%{http_code}' --max-time 5 "$@" "$lib_u" 2>/dev/null
}

# http_is URL STATUS: true when a GET of URL answers STATUS ("any": any
# answer at all).
http_is() {
    lib_s=$(http_status "$1")
    if [ "$2" = any ]; then [ "$lib_s" != 000 ]; else [ "$lib_s" = "$2" ]; fi
}

# wait_http URL [STATUS [PID]]: until URL answers (with STATUS if given
# and not "any"), 10 s at most; gives up early when process PID is gone.
wait_http() {
    lib_i=0
    while [ $lib_i -lt 200 ]; do
        http_is "$1" "${2:-any}" && return 0
        if [ -n "${3:-}" ] && ! kill -0 "$3" 2>/dev/null; then
            return 1
        fi
        sleep 0.05
        lib_i=$((lib_i + 1))
    done
    return 1
}

# bg_start CMD [ARGS...]: run CMD in the background (the caller's
# redirections apply to it); its pid into BG_PID, and remembered for
# bg_stop_all.
bg_start() {
    "$@" &
    BG_PID=$!
    BG_PIDS="$BG_PIDS $BG_PID"
}

# bg_wait PID: wait for it to end by itself, forget it (a pid is never
# signalled after it has been waited for: it may be another's by then).
# Its exit status.
bg_wait() {
    wait "$1"
    lib_rc=$?
    lib_left=
    for lib_p in $BG_PIDS; do
        [ "$lib_p" = "$1" ] || lib_left="$lib_left $lib_p"
    done
    BG_PIDS=$lib_left
    return $lib_rc
}

# bg_stop PID: SIGTERM, wait for it, forget it.
bg_stop() {
    kill "$1" 2>/dev/null
    bg_wait "$1" 2>/dev/null
}

# bg_stop_all: bg_stop every process bg_start started and not yet stopped.
bg_stop_all() {
    for lib_p in $BG_PIDS; do
        kill "$lib_p" 2>/dev/null
    done
    for lib_p in $BG_PIDS; do
        wait "$lib_p" 2>/dev/null
    done
    BG_PIDS=
}

# redis_start DIR: a redis-server on a free loopback port (another port
# if one is lost to a race; 20 tries), saving nothing, its files in DIR
# (DIR/redis.pid, DIR/log); its port into REDIS_PORT, empty if it did
# not start.  redis_stop DIR: stopped, resumed first if SIGSTOPped.
redis_start() {
    REDIS_PORT=
    mkdir -p "$1"
    for _ in $(seq 20); do
        lib_p=$(free_port)
        if redis-server --port "$lib_p" --bind 127.0.0.1 --save '' --appendonly no \
            --dir "$1" --daemonize yes --pidfile "$1/redis.pid" \
            --logfile "$1/log" >/dev/null 2>&1 \
            && wait_for 100 sh -c "[ \"\$(redis-cli -p $lib_p ping 2>/dev/null)\" = PONG ]"; then
            REDIS_PORT=$lib_p
            return 0
        fi
    done
    return 1
}
redis_stop() {
    [ -f "$1/redis.pid" ] || return 0
    kill -CONT "$(cat "$1/redis.pid")" 2>/dev/null
    kill "$(cat "$1/redis.pid")" 2>/dev/null
}

# keygated_bg ERR OPTIONS...: $B/tools/keygated in the background with
# OPTIONS (one --listen 127.0.0.1:0 among them), its stderr in ERR;
# waits for its port.  Sets KGB_PID, and KGB_PORT (empty: it did not
# start).
keygated_bg() {
    lib_e=$1
    shift
    : >"$lib_e"
    bg_start "$B/tools/keygated" "$@" 2>>"$lib_e"
    KGB_PID=$BG_PID
    KGB_PORT=
    lib_i=0
    while [ -z "$KGB_PORT" ] && [ $lib_i -lt 200 ] && kill -0 "$KGB_PID" 2>/dev/null; do
        sleep 0.05
        KGB_PORT=$(sed -n 's/.*listening on 127\.0\.0\.1:\([0-9]*\).*/\1/p' "$lib_e" | head -1)
        lib_i=$((lib_i + 1))
    done
}

# backend_says_why DESC POLICY KEY PATTERN ERRFILE: keygated ($B/tools)
# on POLICY, whose key store cannot answer; 40 checks of KEY over about
# 2 s must all be 503, and keygated's stderr (kept in ERRFILE) must hold
# one line matching PATTERN per interval (10 s) the checks took: a
# backend's failure is said with its reason once per interval, not once
# per request (on a loaded machine the 40 may take longer than one
# interval: then each later line must say how many were held back).
# Skipped (an ok line saying so) when keygated was not built.
backend_says_why() {
    lib_d=$1 lib_pol=$2 lib_key=$3 lib_pat=$4 lib_err=$5
    if [ ! -x "$B/tools/keygated" ]; then
        ok "$lib_d: skipped (keygated not built)"
        return 0
    fi
    keygated_bg "$lib_err" --config "$lib_pol" --listen 127.0.0.1:0 --access-log off
    lib_pid=$KGB_PID
    lib_port=$KGB_PORT
    if [ -z "$lib_port" ]; then
        bad "$lib_d: keygated did not start: $(cat "$lib_err")"
        bg_stop "$lib_pid"
        return 1
    fi
    lib_codes=
    lib_i=0
    lib_t0=$(date +%s)
    while [ $lib_i -lt 40 ]; do
        lib_codes="$lib_codes $(curl -s -o /dev/null -w '%{http_code}' --max-time 10 \
            -H "Authorization: Bearer $lib_key" "http://127.0.0.1:$lib_port/check")"
        sleep 0.05
        lib_i=$((lib_i + 1))
    done
    lib_intervals=$(( ($(date +%s) - lib_t0) / 10 + 1 ))
    bg_stop "$lib_pid"
    lib_n=$(grep -c -- "$lib_pat" "$lib_err")
    lib_held=$(grep -- "$lib_pat" "$lib_err" | grep -c "more in the last 10 s)")
    if [ "$(echo $lib_codes | tr ' ' '\n' | sort -u)" != 503 ]; then
        bad "$lib_d: answers$lib_codes, wanted 503 only"
    elif [ "$lib_n" -lt 1 ] || [ "$lib_n" -gt "$lib_intervals" ] ||
         [ "$lib_held" -ne $((lib_n - 1)) ]; then
        bad "$lib_d: $lib_n lines match '$lib_pat' (wanted 1 per 10 s, $lib_intervals at most, each after the first saying how many were held back) in: $(cat "$lib_err")"
    else
        ok "$lib_d: 40 x 503, the reason logged once: $(grep -- "$lib_pat" "$lib_err" | cut -c1-300)"
    fi
}
