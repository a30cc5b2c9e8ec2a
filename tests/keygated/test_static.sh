#!/bin/sh
# test_static.sh - the dashboard's files as the admin listener serves
# them (tools/keygated_static.c through tests/keygated/static_serve):
# index.html for "/", content types, the security headers on every
# answer (404 too), and nothing outside the folder: no "..", encoded or
# not, no hidden file, no symbolic link that leads out, no folder.
set -u
B=${KEYGATE_BUILDDIR:-.}
S=${KEYGATE_SRCDIR:-.}
. "$S/tests/lib.sh"
SERVE="$B/tests/keygated/static_serve"
[ -x "$SERVE" ] || { echo "static_serve was not built (no libmicrohttpd)"; exit 77; }
T=$(mktemp -d "${TMPDIR:-/tmp}/static-test.XXXXXX")
PID=
cleanup() {
    [ -n "$PID" ] && kill "$PID" 2>/dev/null && wait "$PID" 2>/dev/null
    rm -rf "$T"
}
trap cleanup EXIT
trap 'exit 1' INT TERM

R=$T/root
mkdir -p "$R/js/pages" "$R/sub" "$T/outside"
echo '<!doctype html><title>t</title>' >"$R/index.html"
echo 'export const x = 1;' >"$R/js/pages/a.js"
echo 'body{}' >"$R/app.css"
echo '{}' >"$R/data.json"
echo 'secret' >"$R/.hidden"
echo 'in sub' >"$R/sub/index.html"
echo 'outside' >"$T/outside/secret.txt"
echo 'beside' >"$T/root-beside.txt"
ln -s "$T/outside/secret.txt" "$R/out.txt"
ln -s "$T/outside" "$R/outdir"
ln -s app.css "$R/link.css"
echo 'bin' >"$R/blob.xyz"

"$SERVE" "$R" 2>"$T/err" &
PID=$!
i=0
PORT=
while [ $i -lt 100 ] && [ -z "$PORT" ]; do
    PORT=$(sed -n 's/^listening on 127\.0\.0\.1:\([0-9]*\)$/\1/p' "$T/err")
    sleep 0.05
    i=$((i + 1))
done
[ -n "$PORT" ] || { echo "static_serve did not start:"; cat "$T/err"; exit 1; }
U="http://127.0.0.1:$PORT"

# get PATH: status and headers of a GET into $T/h, body into $T/b.
get() {
    curl -s --path-as-is -D "$T/h" -o "$T/b" -w '%{http_code}' --max-time 5 "$U$1"
}
header() { tr -d '\r' <"$T/h" | sed -n "s/^$1: //Ip" | head -1; }

expect() {  # expect PATH STATUS CONTENT-TYPE (or -)
    st=$(get "$1")
    if [ "$st" != "$2" ]; then
        bad "GET $1: $st, not $2"
        return
    fi
    if [ "$3" != - ] && [ "$(header Content-Type)" != "$3" ]; then
        bad "GET $1: Content-Type '$(header Content-Type)', not '$3'"
        return
    fi
    ok "GET $1: $2${3:+ $3}"
}

expect / 200 "text/html; charset=utf-8"
grep -q '<title>t</title>' "$T/b" && ok "/ is index.html" || bad "/ is not index.html"
expect /index.html 200 "text/html; charset=utf-8"
expect /js/pages/a.js 200 "text/javascript; charset=utf-8"
expect /app.css 200 "text/css; charset=utf-8"
expect /data.json 200 "application/json"
expect /blob.xyz 200 "application/octet-stream"
expect /sub/ 200 "text/html; charset=utf-8"
grep -q 'in sub' "$T/b" && ok "/sub/ is sub/index.html" || bad "/sub/ is not sub/index.html"
# A link that stays inside the folder is served, with the target's type.
expect /link.css 200 "text/css; charset=utf-8"

# Nothing outside, however asked.
for p in /../root-beside.txt /%2e%2e/root-beside.txt /js/../../root-beside.txt \
         /js/%2E%2E/%2e%2e/root-beside.txt /./index.html /.hidden /%2ehidden \
         /out.txt /outdir/secret.txt //index.html /sub /js /missing.html \
         '/a%5c..%5croot-beside.txt' '/index.html;x' \
         '/%69ndex.html/' ; do
    st=$(get "$p")
    if [ "$st" = 404 ] && ! grep -q -e outside -e beside -e secret "$T/b"; then
        ok "GET $p: 404"
    else
        bad "GET $p: $st ($(head -c 60 "$T/b"))"
    fi
done

# A NUL ends the path libmicrohttpd decodes: index.html, typed as what it
# is (not as the ".css" after the NUL).
expect '/index.html%00.css' 200 "text/html; charset=utf-8"

# The security headers, on a file and on a 404 alike.
for p in / /missing.html; do
    get "$p" >/dev/null
    csp=$(header Content-Security-Policy)
    case $csp in
        *"default-src 'self'"*"script-src 'self'"*) ;;
        *) bad "$p: Content-Security-Policy '$csp'"; continue ;;
    esac
    case $csp in
        *unsafe-inline*|*unsafe-eval*|*"*"*) bad "$p: the CSP allows inline or eval: '$csp'"; continue ;;
    esac
    case $csp in
        *"frame-ancestors 'none'"*) ;;
        *) bad "$p: the CSP allows framing: '$csp'"; continue ;;
    esac
    [ "$(header X-Frame-Options)" = DENY ] &&
    [ "$(header Referrer-Policy)" = no-referrer ] &&
    [ "$(header X-Content-Type-Options)" = nosniff ] &&
        ok "$p: security headers" ||
        bad "$p: security headers missing: $(tr -d '\r' <"$T/h" | tr '\n' '|')"
done

# HEAD: the headers, no body.
st=$(curl -s -I -o "$T/h" -w '%{http_code}' --max-time 5 "$U/app.css")
[ "$st" = 200 ] && grep -qi '^content-length: 7' "$T/h" &&
    ok "HEAD /app.css: 200, the file's length" || bad "HEAD /app.css: $st"

# Every file of dashboard/ is installed (named in dashboard/Makefile.inc):
# one left out would be missing from the tarball and the package.
missing=
for f in $(cd "$S" && find dashboard -type f ! -name Makefile.inc | sort); do
    grep -q "$f\( \|\$\)" "$S/dashboard/Makefile.inc" || missing="$missing $f"
done
[ -z "$missing" ] && ok "every dashboard/ file is installed" || bad "not in dashboard/Makefile.inc:$missing"

finish
