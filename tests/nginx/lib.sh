# lib.sh - shared by the module's shell tests (test_module.sh,
# test_state.sh, test_wait.sh), after tests/keygated/lib.sh: the module
# and nginx found (or the test skipped), this tree's libkeygate on the
# library path, an upstream (tests/nginx/upstream.py) on UPORT, nginx's
# folder $N, the lines every configuration starts with, nginx started and
# stopped.

SO=$(cd "$B" && pwd)/nginx-build/objs/ngx_http_keygate_module.so
[ -f "$SO" ] || { echo "the nginx module was not built (configure --with-nginx-module)"; exit 77; }
NGINX=$(command -v nginx || echo /usr/sbin/nginx)
[ -x "$NGINX" ] || { echo "nginx is not installed (scripts/deps.sh --test)"; exit 77; }
command -v python3 >/dev/null || { echo "python3 is needed"; exit 1; }
# The master loads the module, and the module libkeygate: this tree's.
LD_LIBRARY_PATH=$B/.libs${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
export LD_LIBRARY_PATH

N=$T/nginx
USER_LINE=
[ "$(id -u)" -eq 0 ] && USER_LINE="user root;"

# start_upstream SLOW: the upstream on UPORT (/v1/slow answers after SLOW
# seconds), logging what it saw to $T/upstream.seen.
start_upstream() {
    UPORT=$(free_port)
    bg_start python3 "$S/tests/nginx/upstream.py" "$UPORT" "$1" "$T/upstream.seen" 2>"$T/upstream.err"
    wait_http "http://127.0.0.1:$UPORT/" any "$BG_PID" || { bad "upstream did not start: $(cat "$T/upstream.err")"; finish; }
    mkdir -p "$N/conf" "$N/logs" "$N/tmp"
    chmod 755 "$T" "$N" "$N/logs" "$N/tmp"
}

# nginx_head WORKERS LOG_FORMAT: the configuration's first lines, up to
# and including the http block's temp paths (the caller closes it).
nginx_head() {
    cat <<NGX
load_module $SO;
$USER_LINE
worker_processes $1;
pid $N/nginx.pid;
error_log $N/logs/error.log notice;
env KEYGATE_STATE_DIR;
env KEYGATE_PLUGIN_PATH;
events { worker_connections 256; }
http {
    keygate_policy $POLICY;
    log_format kg '$2';
    access_log $N/logs/access.log kg;
    client_body_temp_path $N/tmp/body;
    proxy_temp_path $N/tmp/proxy;
    fastcgi_temp_path $N/tmp/fastcgi;
    uwsgi_temp_path $N/tmp/uwsgi;
    scgi_temp_path $N/tmp/scgi;
NGX
}

# start_nginx: nginx on $N/conf/nginx.conf in the foreground of a
# background process (NGINX_PID), until FPORT's /status (a keygate off
# location) answers 200; the test ends if it does not.
start_nginx() {
    bg_start "$NGINX" -p "$N" -c "$N/conf/nginx.conf" -g 'daemon off;' 2>>"$N/logs/stderr"
    NGINX_PID=$BG_PID
    wait_http "http://127.0.0.1:$FPORT/status" 200 "$NGINX_PID" || { bad "nginx did not start: $(cat "$N/logs/stderr" "$N/logs/error.log")"; finish; }
}

# stop_nginx DESC: stopped (SIGTERM), and its error.log has no alert and
# no worker that exited on a signal.
stop_nginx() {
    bg_stop "$NGINX_PID"
    grep -q '\[alert\]\|exited on signal' "$N/logs/error.log" && bad "$1: nginx alerts: $(grep 'alert\|signal' "$N/logs/error.log")" \
        || ok "$1: no nginx alerts"
}
