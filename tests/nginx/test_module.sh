#!/bin/sh
# ngx_http_keygate_module in Debian's nginx (load_module), with the
# shipped policy (conf/keygate.yaml), in front of a real upstream
# (tests/nginx/upstream.py, which answers with the X-Keygate-* headers it
# received): 401 with WWW-Authenticate and JSON, key_revoked, key_expired,
# 400 for two keys, 403 ip_not_allowed (the client address is nginx's
# $remote_addr: the realip module's where configured, never a header
# the module trusts by itself) and insufficient_permissions, the Free
# plan's 11th request 429 with Retry-After, produced by nginx; allowed
# requests reach the upstream with the decision's X-Keygate-* headers and
# never a client's (on a keygate off location either); the rate-limit
# headers on the upstream's 200, 404 and 500, once each (the upstream's
# own dropped); a request in flight holds the Free plan's one lease, and
# a client that hangs up gives it back at once (log phase), logged 499;
# a request redirected internally is checked once; a denied POST keeps
# its connection; the access log keeps $status; a bad policy fails
# `nginx -t` and `nginx -s reload` with its file:line and the old workers
# keep serving; a good one is loaded by the reload; a worker that cannot
# load the policy answers 503.
. "${KEYGATE_SRCDIR:-.}/tests/keygated/lib.sh"

. "$S/tests/nginx/lib.sh"

POLICY=$T/keygate.yaml
cp "$S/conf/keygate.yaml" "$POLICY"
gateway_keys
SLOWK=$(new_key slow free)
HANG=$(new_key hang free)

start_upstream 2

# nginx_conf DIR FPORT RPORT [extra http lines]: the configuration: the
# module on FPORT ("/" checked, /status public) and on RPORT behind the
# realip module (127.0.0.1 may say who the client is).
nginx_conf() {
    { nginx_head 1 '$remote_addr "$request" $status key=$keygate_key_id code=$keygate_code account=$keygate_account'
      cat <<NGX
    ${3:-}
    server {
        listen 127.0.0.1:$1;
        keygate on;
        # the lease only where asked for (the log phase releases it)
        location / { proxy_set_header X-Keygate-Lease \$keygate_lease; proxy_pass http://127.0.0.1:$UPORT; }
        location = /status { keygate off; proxy_pass http://127.0.0.1:$UPORT; }
        # an internal redirect after the access phase (to a named
        # location, whose phases run again)
        location /v1/tried { try_files /nonexistent @api; }
        location @api { proxy_pass http://127.0.0.1:$UPORT; }
    }
    server {
        listen 127.0.0.1:$2;
        set_real_ip_from 127.0.0.1;
        real_ip_header X-Forwarded-For;
        keygate on;
        location / { proxy_pass http://127.0.0.1:$UPORT; }
    }
}
NGX
    } >"$N/conf/nginx.conf"
}

# `keygate on` without a policy is nginx's configuration error.
FPORT=$(free_port)
RPORT=$(free_port)
nginx_conf "$FPORT" "$RPORT"
sed "s#keygate_policy $POLICY;##" "$N/conf/nginx.conf" >"$N/conf/nopolicy.conf"
if "$NGINX" -t -p "$N" -c "$N/conf/nopolicy.conf" >"$T/t.out" 2>&1; then
    bad "nginx -t accepts keygate on without keygate_policy"
else
    grep -q '"keygate on" needs "keygate_policy"' "$T/t.out" && ok "keygate on without a policy: nginx -t says why" \
        || bad "nginx -t without a policy: $(cat "$T/t.out")"
fi
if ! "$NGINX" -t -p "$N" -c "$N/conf/nginx.conf" >"$T/t.out" 2>&1; then
    bad "nginx -t: $(cat "$T/t.out")"
    finish
fi
bg_start "$NGINX" -p "$N" -c "$N/conf/nginx.conf" -g 'daemon off;' 2>>"$N/logs/stderr"
NGINX_PID=$BG_PID
wait_http "http://127.0.0.1:$FPORT/status" 200 "$NGINX_PID" || { bad "nginx did not start: $(cat "$N/logs/stderr" "$N/logs/error.log")"; finish; }
ok "nginx loads the module and the shipped policy"
GW="http://127.0.0.1:$FPORT"
C2="--interface 127.0.0.2"
C3="--interface 127.0.0.3"

expect_status "no key" 401 $C2 "$GW/v1/scrape"
body_has "no key: JSON" '{"error":{"code":"unauthorized"'
has_header "no key: WWW-Authenticate" 'WWW-Authenticate: Bearer realm="whizo API"'
has_header "no key: JSON type" "Content-Type: application/json"
[ "$(tr -d '\r' <"$T/h" | grep -ci '^WWW-Authenticate:')" -eq 1 ] && ok "one WWW-Authenticate" \
    || bad "WWW-Authenticate: $(tr -d '\r' <"$T/h" | tr '\n' '|')"
grep -q upstream "$T/b" && bad "401 reached the upstream" || ok "401 did not reach the upstream"

FREEID=$(key_id_of "$FREE")
FREEACC=$("$KEYGATE" --config "$POLICY" key list | awk -v k="$FREEID" '$1 == k { print $7 }')
case $FREEACC in acct_*) ok "the free key has an account" ;; *) bad "free key's account: '$FREEACC'" ;; esac
expect_status "free key allowed" 200 $C2 -H "Authorization: Bearer $FREE" "$GW/v1/scrape?url=x"
body_has "upstream got the decision (the lease by proxy_set_header)" "upstream x-keygate-lease=[0-9a-f]\{16\}\.[0-9a-f]* x-keygate-key-id=$FREEID x-keygate-account=$FREEACC x-keygate-plan=free x-keygate-priority=0$"
has_header "client sees X-RateLimit-Limit (the module's)" "X-RateLimit-Limit: 10$"
has_header "client sees X-RateLimit-Remaining" "X-RateLimit-Remaining: 9$"
has_header "client sees X-RateLimit-Reset" "X-RateLimit-Reset: [0-9]\{10\}$"
has_header "client sees RateLimit" 'RateLimit: "hour";r=9;t=[0-9]*, "day";r=99;'
has_header "client sees RateLimit-Policy" 'RateLimit-Policy: "hour";q=10;w=3600'
rate_headers_once "each rate-limit header once on the 200"
expect_status "X-API-Key works too" 200 $C2 -H "X-API-Key: $FREE" "$GW/"

# A client cannot pose as a key to the upstream (3rd Free request).
FORGE="-H X-Keygate-Key-Id:k_forged -H X-Keygate-Account:acct_forged -H X-Keygate-Plan:enterprise
 -H X-Keygate-Priority:99 -H X-Keygate-Lease:forged -H X-Keygate-Other:x"
expect_status "forged X-Keygate-* on a checked path" 200 $C2 $FORGE -H "Authorization: Bearer $FREE" "$GW/v1/jobs/1"
body_has "... the upstream sees the decision's only" "^upstream x-keygate-lease=[0-9a-f]\{16\}\.[0-9a-f]* x-keygate-key-id=$FREEID x-keygate-account=$FREEACC x-keygate-plan=free x-keygate-priority=0$"
expect_status "forged X-Keygate-* on a keygate off location" 200 $C2 $FORGE "$GW/status"
body_has "... none reaches the upstream" "^upstream $"

gateway_denials "$GW/"
RIP="http://127.0.0.1:$RPORT"
expect_status "realip: a trusted proxy names the allowed client" 200 -H "X-Forwarded-For: 127.0.0.2" \
    -H "Authorization: Bearer $IPK" "$RIP/"
expect_status "realip: an untrusted client cannot" 403 $C3 -H "X-Forwarded-For: 127.0.0.2" \
    -H "Authorization: Bearer $IPK" "$RIP/"
# Where nothing asks for $keygate_lease, no lease reaches the upstream,
# not even a client's.
expect_status "no lease asked for" 200 $C2 -H "X-Keygate-Lease: forged" -H "X-Forwarded-For: 127.0.0.2" \
    -H "Authorization: Bearer $IPK" "$RIP/"
body_has "... the upstream gets the key, not the lease" "^upstream x-keygate-key-id=k_[^ ]* x-keygate-account=[^ ]* x-keygate-plan=[a-z]* x-keygate-priority=[0-9]*$"

expect_status "read-only key reads" 200 $C2 -H "Authorization: Bearer $RO" "$GW/v1/jobs/17"
body_has "enterprise priority upstream" "x-keygate-plan=enterprise x-keygate-priority=10"
expect_status "read-only key writes" 403 $C2 -X POST -d x=1 -H "Authorization: Bearer $RO" "$GW/v1/jobs"
body_has "wrong permission: JSON" '"code":"insufficient_permissions"'

# The upstream's own errors: proxied, with the module's headers, logged
# with their status.
expect_status "upstream 404 proxied" 404 $C2 -H "Authorization: Bearer $PRO" "$GW/v1/missing"
has_header "404: X-RateLimit-Limit (the module's)" "X-RateLimit-Limit: 200$"
rate_headers_once "each rate-limit header once on the 404"
expect_status "upstream 500 proxied" 500 $C2 -H "Authorization: Bearer $PRO" "$GW/v1/fail"
has_header "500: RateLimit-Policy" 'RateLimit-Policy: "hour";q=200;w=3600'

# The Free plan: 10 per hour; three were used above.
free_hour_spent "$GW/v1/scrape" $C2
has_header "11th: JSON type" "Content-Type: application/json"

# One request in flight on the Free plan: a second one meanwhile is
# refused, and the lease is back when the first ends.
SLOWID=$(key_id_of "$SLOWK")
curl -s -o "$T/slow.b" --max-time 10 $C2 -H "Authorization: Bearer $SLOWK" "$GW/v1/slow" &
SLOWPID=$!
wait_for 200 grep -q "^/v1/slow key=$SLOWID" "$T/upstream.seen" || bad "the slow request did not reach the upstream"
expect_status "second request while one is in flight" 429 $C2 -H "Authorization: Bearer $SLOWK" "$GW/v1/fast"
body_has "in flight: JSON" '"code":"rate_limited"'
wait "$SLOWPID"
grep -q "x-keygate-key-id=$SLOWID" "$T/slow.b" && ok "the slow request was served" || bad "slow request: $(cat "$T/slow.b")"
expect_status "the lease is back when it ends" 200 $C2 -H "Authorization: Bearer $SLOWK" "$GW/v1/fast"

# A client that hangs up while the upstream works: nginx ends the
# request (499), the log phase gives the lease back, the next request
# gets in at once (a lost lease would hold the key for lease_ttl, 5 min).
HANGID=$(key_id_of "$HANG")
curl -s -o /dev/null --max-time 0.5 $C2 -H "Authorization: Bearer $HANG" "$GW/v1/slow"
hung_up() { grep -q "\"GET /v1/slow HTTP/1.1\" 499 key=$HANGID" "$N/logs/access.log"; }
wait_for 100 hung_up && ok "the client that hung up is logged 499" \
    || bad "no 499 for the hung-up client: $(grep "$HANGID" "$N/logs/access.log")"
expect_status "its lease was released at once" 200 $C2 -H "Authorization: Bearer $HANG" "$GW/v1/fast"

# A request that nginx redirects internally is checked once: one unit
# of the hour, one lease (a second check would find the Free key's one
# lease taken and answer 429).
TRYK=$(new_key tried free)
expect_status "internally redirected request" 200 $C2 -H "Authorization: Bearer $TRYK" "$GW/v1/tried"
has_header "... counted once" "X-RateLimit-Remaining: 9$"
body_has "... the upstream saw the key" "x-keygate-key-id=$(key_id_of "$TRYK")"
expect_status "the next one" 200 $C2 -H "Authorization: Bearer $TRYK" "$GW/v1/tried"
has_header "... counted once too" "X-RateLimit-Remaining: 8$"

# A denied request with a body (small: curl drops a connection whose
# upload the server answered early): nginx reads the body away and the
# connection serves the next request (curl reuses it for both URLs).
head -c 2000 /dev/zero >"$T/body"
codes=$(curl -s -o /dev/null -o /dev/null -w '%{http_code} %{num_connects}\n' $C2 -X POST --data-binary @"$T/body" \
    "$GW/v1/jobs" "$GW/v1/jobs")
[ "$(echo $codes)" = "401 1 401 0" ] && ok "a denied POST with a body keeps the connection" \
    || bad "denied POSTs on one connection: $(echo $codes)"

# $status in the access log: the module answers as nginx; allowed
# requests keep the upstream's status.
logged() { grep -q "\"GET $1 HTTP/1.1\" $2 key=$3" "$N/logs/access.log"; }
wait_for 100 logged /v1/fail 500 "$(key_id_of "$PRO")" && ok "access log: the upstream's 500" \
    || bad "access log, 500: $(grep /v1/fail "$N/logs/access.log")"
logged /v1/scrape 429 "$FREEID code=rate_limited" && ok "access log: 429 rate_limited" \
    || bad "access log, 429: $(grep 'code=rate_limited' "$N/logs/access.log")"
logged "/v1/scrape?url=x" 200 "$FREEID code=- account=$FREEACC" && ok "access log: 200 with the key id and \$keygate_account" \
    || bad "access log, 200: $(grep 'url=x' "$N/logs/access.log")"

# A bad policy: nginx -t says where, a reload keeps the old workers.
cp "$POLICY" "$T/good.yaml"
printf 'version: 1\nplans:\n  free: [\n' >"$POLICY"
if "$NGINX" -t -p "$N" -c "$N/conf/nginx.conf" >"$T/t.out" 2>&1; then
    bad "nginx -t accepts a bad policy"
else
    grep -q "keygate_policy \"$POLICY\": .*$POLICY:[0-9]*:[0-9]*:" "$T/t.out" && ok "nginx -t: the bad policy's file:line:column" \
        || bad "nginx -t with a bad policy: $(cat "$T/t.out")"
fi
"$NGINX" -p "$N" -c "$N/conf/nginx.conf" -s reload 2>>"$N/logs/stderr"
wait_for 200 grep -q "\[emerg\].*keygate_policy" "$N/logs/error.log" && ok "the reload fails with the policy's error" \
    || bad "no emerg for the bad policy: $(tail -5 "$N/logs/error.log")"
expect_status "the old workers keep serving" 200 $C2 -H "Authorization: Bearer $PRO" "$GW/v1/after-bad-reload"
# A good one, with another realm, is what the new workers run.
sed 's/^realm: "whizo API"/realm: "reloaded API"/' "$T/good.yaml" >"$POLICY"
"$NGINX" -p "$N" -c "$N/conf/nginx.conf" -s reload 2>>"$N/logs/stderr"
new_realm() {
    req $C2 "$GW/v1/x"
    tr -d '\r' <"$T/h" | grep -q 'WWW-Authenticate: Bearer realm="reloaded API"'
}
wait_for 200 new_realm && ok "a reload loads the new policy" || bad "after the reload: $(cat "$T/h")"
expect_status "and serves keys" 200 $C2 -H "Authorization: Bearer $PRO" "$GW/v1/after-reload"

stop_nginx "after the reloads"
# The workers' usage counts reached the shipped policy's usage store
# (docs/usage.md): on their flush timer, and at exit (the reload's old
# workers, then these).
PROID=$(key_id_of "$PRO")
u=$("$KEYGATE" --config "$POLICY" usage --key "$PROID" --json 2>&1)
n=$(printf '%s' "$u" | sed -n 's/.*"total":{"allowed":\([0-9]*\).*/\1/p')
[ -n "$n" ] && [ "$n" -ge 3 ] && ok "the workers' usage is in the store ($n allowed for PRO)" \
    || bad "usage after nginx: $u"
"$KEYGATE" --config "$POLICY" logs --code key_revoked --json | grep -q '"status":401,"code":"key_revoked"' \
    && ok "and its events (the revoked key's 401s)" || bad "logs after nginx: $("$KEYGATE" --config "$POLICY" logs)"
# A worker that cannot load the policy fails closed: the master could
# (KGT_KEYS is in its environment), the workers cannot (no `env KGT_KEYS`
# line: nginx clears their environment), so every checked request gets
# 503 auth_unavailable, nothing reaches the upstream, and error.log says
# why.
sed 's#path: ${KEYGATE_STATE_DIR:-/var/lib/keygate}/keys.db#path: ${KGT_KEYS}#' "$T/good.yaml" >"$T/workerless.yaml"
grep -q 'KGT_KEYS' "$T/workerless.yaml" || bad "the test's policy edit did not apply"
sed -e "s#keygate_policy $POLICY;#keygate_policy $T/workerless.yaml;#" "$N/conf/nginx.conf" >"$N/conf/workerless.conf"
: >"$N/logs/error.log"
KGT_KEYS=$KEYGATE_STATE_DIR/keys.db bg_start "$NGINX" -p "$N" -c "$N/conf/workerless.conf" -g 'daemon off;' 2>>"$N/logs/stderr"
NGINX_PID=$BG_PID
wait_http "http://127.0.0.1:$FPORT/status" 200 "$NGINX_PID" || bad "nginx (workerless) did not start: $(cat "$N/logs/stderr")"
expect_status "a worker without its policy" 503 $C2 -H "Authorization: Bearer $PRO" "$GW/v1/closed"
body_has "... says auth_unavailable" '"code":"auth_unavailable"'
grep -q "^/v1/closed" "$T/upstream.seen" && bad "the 503 reached the upstream" || ok "the 503 did not reach the upstream"
grep -q "\[emerg\].*KGT_KEYS.*this worker answers 503" "$N/logs/error.log" && ok "error.log says why" \
    || bad "error.log: $(cat "$N/logs/error.log")"
bg_stop "$NGINX_PID"

# The shipped site (conf/nginx/keygate-module.conf), its paths and port
# made the test's: nginx -t takes it, and it checks: no key is 401, the
# key is logged with its account.
XPORT=$(free_port)
{ nginx_head 1 x | grep -v "keygate_policy\|log_format\|access_log"
  sed -e "s#/etc/keygate/keygate.yaml#$POLICY#" -e "s#listen 80;#listen 127.0.0.1:$XPORT;#" \
      -e "s#/var/log/nginx/#$N/logs/#" -e "s#127.0.0.1:9000#127.0.0.1:$UPORT#" \
      "$S/conf/nginx/keygate-module.conf"
  echo "}"
} >"$N/conf/shipped.conf"
grep -q "listen 127.0.0.1:$XPORT;" "$N/conf/shipped.conf" || bad "the test's edit of keygate-module.conf did not apply"
if "$NGINX" -t -p "$N" -c "$N/conf/shipped.conf" >"$T/t.out" 2>&1; then
    ok "the shipped keygate-module.conf passes nginx -t"
    bg_start "$NGINX" -p "$N" -c "$N/conf/shipped.conf" -g 'daemon off;' 2>>"$N/logs/stderr"
    NGINX_PID=$BG_PID
    wait_http "http://127.0.0.1:$XPORT/status" 200 "$NGINX_PID" || bad "nginx (shipped site) did not start: $(cat "$N/logs/stderr")"
    expect_status "shipped site: no key" 401 -H "Host: api.example.com" "http://127.0.0.1:$XPORT/v1/scrape"
    expect_status "shipped site: the Pro key" 200 -H "Host: api.example.com" -H "Authorization: Bearer $PRO" "http://127.0.0.1:$XPORT/v1/scrape"
    wait_for 50 grep -q "key=$PROID account=acct_" "$N/logs/api.access.log" \
        && ok "shipped site: its access log names the key and its account" \
        || bad "shipped site's access log: $(cat "$N/logs/api.access.log")"
    bg_stop "$NGINX_PID"
else
    bad "nginx -t with the shipped keygate-module.conf: $(cat "$T/t.out")"
fi
finish
