#!/bin/sh
# keygated against hostile input: oversize headers and URIs, too many
# headers, NUL bytes, 100 Authorization headers, lowercase "bearer", tabs,
# invalid UTF-8, garbage request lines.  Each gets the right answer, and
# keygated stays up, keeps a valid access log and exits cleanly (this test
# runs under ASan/UBSan in `make check-sanitizers`).
. "${KEYGATE_SRCDIR:-.}/tests/keygated/lib.sh"

POLICY=$T/policy.yaml
cat >"$POLICY" <<'YAML'
version: 1
credential:
  - {module: bearer, control: optional}
  - {module: header, control: optional, options: {name: X-API-Key}}
keystore:
  - {module: file, control: required, options: {path: keys.yaml}}
plans:
  pro: {}
YAML
KEY=$(new_key hostile pro)
start_keygated --max-header-bytes 16384 --max-headers 128

# raw 'python bytes expression': sends it, prints the status code (or
# "closed" if the server hung up without an answer).
raw() {
    python3 - "$KGD_PORT" "$1" <<'PY'
import socket, sys
port, expr = int(sys.argv[1]), sys.argv[2]
data = eval(expr)
s = socket.create_connection(("127.0.0.1", port), timeout=10)
try:
    s.sendall(data)
except OSError:
    pass
buf = b""
try:
    while b"\r\n" not in buf:
        chunk = s.recv(4096)
        if not chunk:
            break
        buf += chunk
except OSError:
    pass
line = buf.split(b"\r\n", 1)[0].split(b" ")
print(line[1].decode() if len(line) > 1 else "closed")
PY
}
expect_raw() {
    got=$(raw "$2")
    case " $3 " in *" $got "*) ok "$1: $got" ;; *) bad "$1: got $got, wanted $3" ;; esac
}
K="b'$KEY'"

expect_raw "a 20 KB header" \
    "b'GET /check HTTP/1.1\r\nHost: x\r\nX-Big: ' + b'a' * 20000 + b'\r\n\r\n'" "431"
expect_raw "a 20 KB URI" \
    "b'GET /check/' + b'a' * 20000 + b' HTTP/1.1\r\nHost: x\r\n\r\n'" "414"
expect_raw "200 small headers" \
    "b'GET /check HTTP/1.1\r\nHost: x\r\n' + b''.join(b'X-H%d: v\r\n' % i for i in range(200)) + b'\r\n'" "431"
expect_raw "100 Authorization headers" \
    "b'GET /check HTTP/1.1\r\nHost: x\r\n' + b'Authorization: Bearer ' + $K + b'\r\n' * 1 + (b'Authorization: Bearer ' + $K + b'\r\n') * 99 + b'\r\n'" "400"
expect_raw "NUL byte in the key" \
    "b'GET /check HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ' + $K[:10] + b'\x00' + $K[11:] + b'\r\n\r\n'" "400 401"
expect_raw "NUL byte in a header name" \
    "b'GET /check HTTP/1.1\r\nHost: x\r\nAuthor\x00ization: Bearer ' + $K + b'\r\n\r\n'" "400 401"
# libmicrohttpd hands the URI over as a C string, so the path ends at a
# NUL; no gateway forwards one (nginx, Envoy and Caddy refuse it first).
expect_raw "NUL byte in the URI: cut there, no crash" \
    "b'GET /check/v1\x00/x HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ' + $K + b'\r\n\r\n'" "200 400"
expect_raw "lowercase bearer" \
    "b'GET /check HTTP/1.1\r\nHost: x\r\nauthorization: bearer ' + $K + b'\r\n\r\n'" "200"
expect_raw "BEARER in capitals" \
    "b'GET /check HTTP/1.1\r\nHost: x\r\nAuthorization: BEARER ' + $K + b'\r\n\r\n'" "200"
expect_raw "tab between Bearer and the key" \
    "b'GET /check HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer\t' + $K + b'\r\n\r\n'" "400"
expect_raw "tab before the scheme" \
    "b'GET /check HTTP/1.1\r\nHost: x\r\nAuthorization:\tBearer ' + $K + b'\r\n\r\n'" "200"
expect_raw "invalid UTF-8 in the key" \
    "b'GET /check HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer \xff\xfe' + $K + b'\r\n\r\n'" "400"
expect_raw "invalid UTF-8 in X-Original-URI" \
    "b'GET /check HTTP/1.1\r\nHost: x\r\nX-Original-URI: /v1/\xff\xc3(\r\nAuthorization: Bearer ' + $K + b'\r\n\r\n'" "200"
expect_raw "invalid UTF-8 in the path" \
    "b'GET /check/v1/\xc0\xaf HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ' + $K + b'\r\n\r\n'" "200"
expect_raw "control character in X-Original-URI" \
    "b'GET /check HTTP/1.1\r\nHost: x\r\nX-Original-URI: /v1/%01\r\nAuthorization: Bearer ' + $K + b'\r\n\r\n'" "400"
expect_raw "X-Original-Method with a space" \
    "b'GET /check HTTP/1.1\r\nHost: x\r\nX-Original-Method: GE T\r\nAuthorization: Bearer ' + $K + b'\r\n\r\n'" "400"
expect_raw "a huge X-Forwarded-For" \
    "b'GET /check HTTP/1.1\r\nHost: x\r\nX-Forwarded-For: ' + b'1.2.3.4, ' * 1500 + b'\r\nAuthorization: Bearer ' + $K + b'\r\n\r\n'" "200"
expect_raw "garbage request line" "b'\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03\r\n\r\n'" "400 closed"
expect_raw "HTTP/0.9 style request" "b'GET /check\r\n\r\n'" "400 505 closed"
expect_raw "header without a colon" \
    "b'GET /check HTTP/1.1\r\nHost: x\r\nNoColonHere\r\n\r\n'" "400 401"
expect_raw "a body on /check is read and dropped" \
    "b'POST /check HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\nAuthorization: Bearer ' + $K + b'\r\n\r\n' + b'x' * 100000" "200"
expect_raw "truncated request, then hang-up" "b'GET /check HTTP/1.1\r\nHost: x\r\nAuthoriz'" "closed"

expect_status "still serving after all that" 200 -H "Authorization: Bearer $KEY" "$KGD/check"
expect_status "metrics" 200 "$KGD/metrics"
body_has "our 431s are counted" 'keygated_rejected_requests_total{status="431"} [1-9]'
body_has "nothing left in flight" 'keygated_in_flight_requests 1$'
sleep 0.5   # access lines are flushed within 200 ms
if python3 -c '
import json, sys
for line in open(sys.argv[1], "rb"):
    json.loads(line.decode("utf-8"))
' "$T/access.log"; then ok "access log stays valid UTF-8 JSON"; else bad "access log broken"; fi
grep -q "$KEY" "$T/access.log" && bad "key in the access log" || ok "no key in the access log"
stop_keygated

# ==== Targets that servers read differently, and who names the target ======
# (issue 16 items 2, 3, 9.)  On the shipped policy, whose Enterprise plan
# maps routes to permissions (scope, unmapped: deny): a key that may only
# read crawls (or jobs) must not reach /v1/admin or /admin through a path
# that Tomcat, Jetty or Spring read otherwise (";" parameters stripped, "\"
# taken for "/"): each is 400 invalid_request, wherever the target comes
# from.  Two headers naming the original request are 400, not first-wins.
# /whoami answers any valid key: it is keygated's, not a route of the API.
POLICY=$S/conf/keygate.yaml
CRAWL=$(new_key crawl enterprise --permission crawl:read)
JOBS=$(new_key jobs enterprise --permission jobs:read)
ENT=$(new_key ent enterprise --permission '*')
[ -n "$CRAWL" ] && [ -n "$JOBS" ] && [ -n "$ENT" ] && ok "enterprise keys on the shipped policy" || bad "enterprise keys"
start_keygated
expect_status "crawl:read reads a crawl" 200 -H "Authorization: Bearer $CRAWL" \
    -H "X-Original-Method: GET" -H "X-Original-URI: /v1/crawl/x" "$KGD/check"
expect_status "crawl:read, plain dot segments to /v1/admin" 403 -H "Authorization: Bearer $CRAWL" \
    -H "X-Original-Method: GET" -H "X-Original-URI: /v1/crawl/../admin" "$KGD/check"
for t in '/v1/crawl/..;/admin' '/v1/crawl/..%3b/admin' '/v1/crawl/x/..\..\admin' \
         '/v1/crawl/%2e%2e;x/admin' '/v1/crawl/;/../../admin' '/v1/crawl/..%5C..%5Cadmin' \
         '/v1/crawl//../admin'; do
    tt=$(printf '%s' "$t" | sed 's/\\/\\\\/g')   # doubled: ok's echo halves them
    expect_status "crawl:read, X-Original-URI $tt" 400 -H "Authorization: Bearer $CRAWL" \
        -H "X-Original-Method: GET" -H "X-Original-URI: $t" "$KGD/check"
    body_has "  ... invalid_request" '"code":"invalid_request"'
    expect_status "crawl:read, X-Forwarded-Uri $tt" 400 -H "Authorization: Bearer $CRAWL" \
        -H "X-Forwarded-Method: GET" -H "X-Forwarded-Uri: $t" "$KGD/check"
done
expect_status "jobs:read, X-Original-URI /v1/jobs/..\\\\admin" 400 -H "Authorization: Bearer $JOBS" \
    -H "X-Original-URI: /v1/jobs/..\\admin" "$KGD/check"
expect_status "jobs:read, Envoy /check/v1/jobs/..;/admin" 400 --path-as-is \
    -H "Authorization: Bearer $JOBS" "$KGD/check/v1/jobs/..;/admin"
J="b'$JOBS'"
expect_raw "jobs:read, Envoy /check/v1/jobs/..\\\\admin" \
    "b'GET /check/v1/jobs/..\\\\admin HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ' + $J + b'\r\n\r\n'" "400"
expect_raw "two X-Original-URI headers" \
    "b'GET /check HTTP/1.1\r\nHost: x\r\nX-Original-URI: /v1/jobs/1\r\nX-Original-URI: /v1/admin\r\nAuthorization: Bearer ' + $J + b'\r\n\r\n'" "400"
expect_raw "two equal X-Original-URI headers" \
    "b'GET /check HTTP/1.1\r\nHost: x\r\nX-Original-URI: /v1/jobs/1\r\nX-Original-URI: /v1/jobs/1\r\nAuthorization: Bearer ' + $J + b'\r\n\r\n'" "400"
expect_raw "two X-Forwarded-Uri headers" \
    "b'GET /check HTTP/1.1\r\nHost: x\r\nX-Forwarded-Uri: /v1/jobs/1\r\nx-forwarded-uri: /admin\r\nAuthorization: Bearer ' + $J + b'\r\n\r\n'" "400"
expect_raw "two X-Original-Method headers" \
    "b'GET /check HTTP/1.1\r\nHost: x\r\nX-Original-Method: GET\r\nX-Original-Method: DELETE\r\nX-Original-URI: /v1/jobs/1\r\nAuthorization: Bearer ' + $J + b'\r\n\r\n'" "400"
expect_raw "one X-Original-URI: first-wins was never needed" \
    "b'GET /check HTTP/1.1\r\nHost: x\r\nX-Original-URI: /v1/jobs/1\r\nAuthorization: Bearer ' + $J + b'\r\n\r\n'" "200"
expect_status "a bare /check names no route: scope fails closed" 400 -H "Authorization: Bearer $JOBS" "$KGD/check"
expect_status "whoami, enterprise key with *" 200 -H "Authorization: Bearer $ENT" "$KGD/whoami"
body_has "  ... its record" '"plan":"enterprise"'
expect_status "whoami, enterprise key with crawl:read" 200 -H "Authorization: Bearer $CRAWL" "$KGD/whoami"
expect_status "whoami still needs a valid key" 401 -H "Authorization: Bearer whizo_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA" "$KGD/whoami"
stop_keygated
# ==== end of the targets block ==============================================

finish
