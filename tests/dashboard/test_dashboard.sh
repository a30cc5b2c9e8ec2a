#!/bin/sh
# test_dashboard.sh - the API Keys dashboard in a real browser (issue 21;
# docs/dashboard.md): keygated with the shipped policy, its admin
# listener on loopback serving dashboard/ from the source tree; an
# operator key, a customer's account:manage key and two other accounts
# made with the CLI; then tests/dashboard/dashboard.mjs drives Debian's
# Chromium through puppeteer-core (sign in, create "Production App", the
# key shown once and copied, /check with it, usage, rotate, revoke, XSS,
# axe-core on every page, the operator's accounts and audit log, sign
# out) and saves screenshots at 360 and 1440 px in
# $builddir/tests/dashboard/shots/.
#
# puppeteer-core and axe-core come from npm, installed by this test into
# the build tree ($builddir/tests/dashboard/npm, never in git) at the
# versions below; skipped (77) without chromium, node or npm.
. "${KEYGATE_SRCDIR:-.}/tests/keygated/lib.sh"

PUPPETEER_VERSION=24.43.1   # puppeteer-core 25 needs Node 22; Debian 12 has 18
AXE_VERSION=4.14.1
CHROMIUM=${CHROMIUM:-$(command -v chromium || true)}
[ -n "$CHROMIUM" ] || { echo "chromium is not installed (scripts/deps.sh --test)"; exit 77; }
command -v node >/dev/null || { echo "node is not installed (scripts/deps.sh --test)"; exit 77; }
command -v npm >/dev/null || { echo "npm is not installed (scripts/deps.sh --test)"; exit 77; }
"$KEYGATED" --help 2>&1 | grep -q -- '--admin-listen' ||
    { echo "this keygated has no admin listener (issue 19 not merged)"; exit 77; }

# ---- puppeteer-core and axe-core, cached in the build tree ---------------
NPM_DIR=$(cd "$B" && pwd)/tests/dashboard/npm
have() {
    node -e "process.exit(require('$NPM_DIR/node_modules/$1/package.json').version === '$2' ? 0 : 1)" 2>/dev/null
}
if ! have puppeteer-core $PUPPETEER_VERSION || ! have axe-core $AXE_VERSION; then
    mkdir -p "$NPM_DIR"
    echo "installing puppeteer-core@$PUPPETEER_VERSION axe-core@$AXE_VERSION into $NPM_DIR"
    # --ignore-scripts: puppeteer-core downloads nothing; Chromium is Debian's.
    ( cd "$NPM_DIR" && [ -f package.json ] || echo '{"private": true}' >"$NPM_DIR/package.json"
      npm install --prefix "$NPM_DIR" --no-audit --no-fund --ignore-scripts --loglevel=error \
          "puppeteer-core@$PUPPETEER_VERSION" "axe-core@$AXE_VERSION" >"$T/npm.log" 2>&1 ) ||
        { echo "npm install failed:"; cat "$T/npm.log"; exit 1; }
fi

# ---- keygated: the shipped policy, keys in SQLite under $T ---------------
# The shipped policy's plans (admin, enterprise...), with the keys in a
# file store: it keeps the audit log (JSON lines) and the links of a
# rotation today (issue 19); the SQL store's come with its migrations.
POLICY=$T/policy.yaml
awk -v keys="$T/keys.yaml" '
    /^keystore:/ { print; print "  - module: file"; print "    control: required";
                   print "    cache: {ttl: 2s, negative_ttl: 1s}";
                   print "    options: {path: \"" keys "\", refresh: 1s}"; skip = 1; next }
    skip && /^[a-z]/ { skip = 0 }
    !skip { print }' "$S/conf/keygate.yaml" >"$POLICY"
KG="$KEYGATE --config $POLICY"
# Usage counted (issue 18) when this tree's keygate knows a usage: section.
USAGE=0
FLUSH_S=1
if grep -q '^usage:' "$POLICY"; then
    # The shipped section, flushed every second for the test.
    sed -i "s/^\(  *flush_interval:\).*/\1 ${FLUSH_S}s/" "$POLICY"
    USAGE=1
else
    cp "$POLICY" "$T/try.yaml"
    printf 'usage:\n  module: sql\n  options: {url: "sqlite://%s/usage.db"}\n  flush_interval: %ss\n' \
        "$T" "$FLUSH_S" >>"$T/try.yaml"
    if $KEYGATE --config "$T/try.yaml" policy check >/dev/null 2>&1; then
        cp "$T/try.yaml" "$POLICY"
        USAGE=1
    fi
fi

# Alert rules (issue 20, docs/alerts.md) to a log notifier: the Alerts
# page lists them (when this tree's keygate knows an alerts: section).
ALERTS=0
cp "$POLICY" "$T/try.yaml"
printf '%s\n' 'notifiers:' '  log:' '    module: log' 'alerts:' \
    '  - {name: quota-80, when: {quota: 80%}, notify: [log]}' \
    '  - {name: expiring, when: {key_expires_within: 7d}, notify: [log]}' >>"$T/try.yaml"
if $KEYGATE --config "$T/try.yaml" policy check >/dev/null 2>&1; then
    cp "$T/try.yaml" "$POLICY"
    ALERTS=1
fi

OP_ACCT=$($KG account create --name Operators --plan admin 2>"$T/err") || { cat "$T/err"; exit 1; }
OP_KEY=$($KG key create --account "$OP_ACCT" --permission admin --name ops 2>"$T/err") || { cat "$T/err"; exit 1; }
# The customer is on Enterprise: the shipped policy checks permissions
# (account:manage for /api/v1) on the Enterprise and admin plans only.
CUST_NAME="Acme Scraping"
# Its own hour limit (an Enterprise custom limit) is what the usage chart
# draws.
CUST_ACCT=$($KG account create --name "$CUST_NAME" --plan enterprise --external-id cus_acme \
    --limit hour=200/1h 2>"$T/err") ||
    { cat "$T/err"; exit 1; }
CUST_KEY=$($KG key create --account "$CUST_ACCT" --permission account:manage --name dashboard 2>"$T/err") ||
    { cat "$T/err"; exit 1; }
OTHER_ACCT=$($KG account create --name "Other Co" --plan free 2>"$T/err") || { cat "$T/err"; exit 1; }
$KG key create --account "$OTHER_ACCT" --name "their key" >/dev/null 2>&1
ok "accounts and keys made with the CLI (operator, customer, another account)"

launch_keygated --config "$POLICY" --listen 127.0.0.1:0 --admin-listen 127.0.0.1:0 \
    --dashboard-dir "$S/dashboard" --access-log "$T/access.log"
i=0
ADMIN_PORT=
while [ $i -lt 100 ] && [ -z "$ADMIN_PORT" ]; do
    ADMIN_PORT=$(sed -n 's/.*admin.* on 127\.0\.0\.1:\([0-9][0-9]*\).*/\1/p' "$T/keygated.err" | head -1)
    [ -n "$ADMIN_PORT" ] || sleep 0.05
    i=$((i + 1))
done
[ -n "$ADMIN_PORT" ] || { echo "no admin listener:"; cat "$T/keygated.err"; exit 1; }
# launch_keygated took the first "listening on": it may be the admin one.
KGD_PORT=$(grep -v admin "$T/keygated.err" | sed -n 's/.*listening on 127\.0\.0\.1:\([0-9][0-9]*\).*/\1/p' | head -1)
KGD="http://127.0.0.1:$KGD_PORT"
ADMIN="http://127.0.0.1:$ADMIN_PORT"
wait_http "$ADMIN/" 200 "$KGD_PID" || { echo "the dashboard does not answer:"; cat "$T/keygated.err"; exit 1; }

SHOTS=$(cd "$B" && pwd)/tests/dashboard/shots
rm -rf "$SHOTS"
ADMIN=$ADMIN CHECK=$KGD CUSTOMER_KEY=$CUST_KEY CUSTOMER_ACCOUNT=$CUST_ACCT CUSTOMER_NAME=$CUST_NAME \
OTHER_ACCOUNT=$OTHER_ACCT OPERATOR_KEY=$OP_KEY USAGE=$USAGE FLUSH_S=$FLUSH_S ALERTS=$ALERTS \
SHOTS=$SHOTS NPM_DIR=$NPM_DIR CHROMIUM=$CHROMIUM \
    timeout 300 node "$S/tests/dashboard/dashboard.mjs" >"$T/node.out" 2>&1
st=$?
cat "$T/node.out"
npass=$((npass + $(grep -c '^ok - ' "$T/node.out")))
fail=$((fail + $(grep -c '^FAIL - ' "$T/node.out")))
[ $st -eq 0 ] || [ "$(grep -c '^FAIL - ' "$T/node.out")" -gt 0 ] || bad "dashboard.mjs exited $st"
echo "screenshots: $SHOTS"
finish
