#!/bin/sh
# quickstart.sh - from a fresh Debian 12 checkout to a running keygated:
#   1. installs the build dependencies (scripts/deps.sh; needs root or sudo),
#   2. builds keygate in _build/ (out of tree, like scripts/test.sh),
#   3. creates a state folder (./state, or $KEYGATE_STATE_DIR) holding the
#      key store, keygated's log, access log and pid file,
#   4. creates two demo keys (Pro and Free plans) and an operator key of
#      the admin API (plan admin, permission admin) with the keygate CLI,
#   5. starts keygated on 127.0.0.1:8080 ($KEYGATED_LISTEN), its admin API
#      on 127.0.0.1:8081 ($KEYGATED_ADMIN_LISTEN; docs/admin-api.md), with
#      conf/keygate.yaml (the same policy keygated embeds as its default),
#      IN THE BACKGROUND, and prints its PID, how to stop it and curl lines
#      that work.  With --foreground it stays in the foreground instead
#      (Ctrl-C stops it).
# Run it again at will: it stops the keygated it started before.
set -eu
cd "$(dirname "$0")/.."
ROOT=$(pwd)
FOREGROUND=0
case "${1:-}" in
    --foreground|-f) FOREGROUND=1 ;;
    --help|-h) sed -n '2,15p' "$0"; exit 0 ;;
    "") ;;
    *) echo "usage: $0 [--foreground]" >&2; exit 2 ;;
esac
STATE=${KEYGATE_STATE_DIR:-$ROOT/state}
LISTEN=${KEYGATED_LISTEN:-127.0.0.1:8080}
URL="http://$LISTEN"
ADMIN_LISTEN=${KEYGATED_ADMIN_LISTEN:-127.0.0.1:8081}
ADMIN_URL="http://$ADMIN_LISTEN"
BUILD=$ROOT/_build

say() { printf '\n== %s\n' "$*"; }

say "1/5 dependencies (scripts/deps.sh)"
sh scripts/deps.sh

say "2/5 build (in $BUILD)"
if [ ! -x ./configure ]; then
    ./autogen.sh >/dev/null 2>&1
fi
mkdir -p "$BUILD"
cd "$BUILD"
if [ ! -f Makefile ]; then
    # keygated needs libmicrohttpd; the shipped policy keeps keys in SQLite.
    ../configure --with-microhttpd=yes --with-sqlite=yes >configure.out 2>&1 || { tail -20 configure.out; exit 1; }
fi
make -j"$(nproc 2>/dev/null || echo 2)" >make.out 2>&1 || { tail -30 make.out; exit 1; }
cd "$ROOT"
KEYGATE="$BUILD/tools/keygate"
KEYGATED="$BUILD/tools/keygated"
[ -x "$KEYGATED" ] || { echo "keygated was not built (is libmicrohttpd-dev installed?)"; exit 1; }
# Use the plugins of this build, not installed ones.
KEYGATE_PLUGIN_PATH="$BUILD/plugins"
KEYGATE_STATE_DIR=$STATE
export KEYGATE_PLUGIN_PATH KEYGATE_STATE_DIR
echo "built $KEYGATED"

say "3/5 state folder $STATE"
mkdir -p "$STATE"
chmod 700 "$STATE"
if [ -f "$STATE/keygated.pid" ] && kill -0 "$(cat "$STATE/keygated.pid")" 2>/dev/null; then
    echo "stopping the keygated started earlier (PID $(cat "$STATE/keygated.pid"))"
    kill "$(cat "$STATE/keygated.pid")"
    i=0
    while [ -f "$STATE/keygated.pid" ] && [ $i -lt 100 ]; do sleep 0.1; i=$((i + 1)); done
fi

say "4/5 demo keys (keygate key create; each key is shown only now)"
POLICY="$ROOT/conf/keygate.yaml"
"$KEYGATED" --config "$POLICY" --check-config
PRO=$("$KEYGATE" --config "$POLICY" key create --name "demo-pro" --plan pro 2>/dev/null)
FREE=$("$KEYGATE" --config "$POLICY" key create --name "demo-free" --plan free 2>/dev/null)
# The first operator key of the admin API (docs/admin-api.md).
OPS=$("$KEYGATE" --config "$POLICY" key create --plan admin --permission admin --name ops 2>/dev/null)
printf 'PRO=%s\nFREE=%s\nOPS=%s\n' "$PRO" "$FREE" "$OPS" >"$STATE/demo-keys.env"
chmod 600 "$STATE/demo-keys.env"
echo "Pro key:  $PRO"
echo "Free key: $FREE"
echo "Operator key (admin API): $OPS"
echo "(also saved in $STATE/demo-keys.env; list keys: $KEYGATE --config conf/keygate.yaml key list)"

say "5/5 keygated on $LISTEN"
. "$ROOT/scripts/quickstart-keygated.sh"
# The dashboard (docs/dashboard.md) from this checkout: not installed.
ARGS="$(quickstart_keygated_args "$POLICY" "$LISTEN" "$STATE") --admin-listen $ADMIN_LISTEN --dashboard-dir $ROOT/dashboard"
if [ "$FOREGROUND" -eq 1 ]; then
    echo "running in the foreground (Ctrl-C stops it); in another shell:"
    echo "  . $STATE/demo-keys.env"
    echo "  curl -i -H \"Authorization: Bearer \$PRO\" $URL/check"
    echo "  the dashboard: open $ADMIN_URL/ and sign in with the operator key \$OPS"
    # shellcheck disable=SC2086
    exec "$KEYGATED" $ARGS
fi
# shellcheck disable=SC2086
nohup "$KEYGATED" $ARGS >"$STATE/keygated.log" 2>&1 &
PID=$!
i=0
until curl -s -o /dev/null "$URL/healthz" 2>/dev/null; do
    if ! kill -0 $PID 2>/dev/null || [ $i -ge 100 ]; then
        echo "keygated did not start:"; cat "$STATE/keygated.log"; exit 1
    fi
    sleep 0.1
    i=$((i + 1))
done
code=$(curl -s -o /dev/null -w '%{http_code}' -H "Authorization: Bearer $PRO" "$URL/check")
[ "$code" = 200 ] || { echo "the demo check answered $code, not 200"; cat "$STATE/keygated.log"; exit 1; }

BAD=$(printf '%s' "$PRO" | sed 's/.$/x/')
[ "$BAD" != "$PRO" ] || BAD=$(printf '%s' "$PRO" | sed 's/.$/y/')
cat <<EOF

keygated is running in the background: PID $PID (also in $STATE/keygated.pid)

  The API Keys dashboard: open $ADMIN_URL/ in a browser and sign in
  with the operator key $OPS
  (docs/dashboard.md)
  log:         $STATE/keygated.log
  access log:  $STATE/access.log (one JSON line per decision)
  stop it:     kill \$(cat $STATE/keygated.pid)
  reload:      kill -HUP \$(cat $STATE/keygated.pid)   (policy and key store)

Try it (the Pro key was just checked: 200):

  # allowed: 200 with X-Keygate-Key-Id, X-Keygate-Plan, the rate-limit headers
  # and X-Keygate-Lease: a check HOLDS a lease of the plan's in-flight limit
  # (Pro: 10, Free: 1) until it is released, or for 5 minutes
  curl -i -H "Authorization: Bearer $PRO" $URL/check
  # ... so release it when the request is done (the id from X-Keygate-Lease):
  curl -s -X DELETE $URL/leases/<X-Keygate-Lease>
  # or check by rate only, taking no lease (nothing to release):
  curl -i -H "Authorization: Bearer $PRO" "$URL/check?lease=none"
  # the same key as X-API-Key, for the original request POST /v1/scrape
  curl -i -H "X-API-Key: $PRO" -H "X-Original-Method: POST" -H "X-Original-URI: /v1/scrape" $URL/check
  # who am I: the key's record, plan, limits and what remains (uses no quota)
  curl -s -H "Authorization: Bearer $PRO" $URL/whoami
  # missing key: 401 with WWW-Authenticate and {"error":{"code":"unauthorized",...}}
  curl -i $URL/check
  # a typo in the key: 401 invalid API key (the checksum catches it)
  curl -i -H "Authorization: Bearer $BAD" $URL/check
  # the Free plan allows 1 request in flight: take its lease, see the 429,
  # release it, and the next check passes
  L=\$(curl -s -D - -o /dev/null -H "Authorization: Bearer $FREE" $URL/check | tr -d '\r' | sed -n 's/^X-Keygate-Lease: //p')
  curl -i -H "Authorization: Bearer $FREE" $URL/check      # 429 + Retry-After
  curl -s -X DELETE $URL/leases/\$L                          # 204: released
  curl -i -H "Authorization: Bearer $FREE" "$URL/check?lease=none"   # 200, no lease held
  # the admin API (its own listener, $ADMIN_URL): the operator key's view,
  # the accounts, and a new key for the Pro key's account (shown once)
  curl -s -H "Authorization: Bearer $OPS" $ADMIN_URL/api/v1/me
  curl -s -H "Authorization: Bearer $OPS" $ADMIN_URL/api/v1/accounts
  # its OpenAPI document
  curl -s $ADMIN_URL/api/v1/openapi.json
  # Prometheus metrics and liveness
  curl -s $URL/metrics
  curl -s $URL/healthz

The command line as the README's tour uses it (from $ROOT):

  export PATH=\$PWD/_build/tools:\$PATH KEYGATE_PLUGIN_PATH=\$PWD/_build/plugins

Put nginx, Caddy, Traefik or Envoy in front: see docs/keygated.md and conf/.
EOF
