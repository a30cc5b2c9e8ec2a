#!/usr/bin/env python3
"""The API behind nginx in tests/nginx/test_module.sh: answers every
request with the X-Keygate-* headers it received (all of them, in order,
so that a forged one would show), /v1/slow after SLOW seconds, /v1/fail
with 500, /v1/missing with 404; each request's path and key id are
written to SEEN as it arrives.  Usage: upstream.py PORT SLOW SEEN"""
import sys
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

PORT = int(sys.argv[1])
SLOW = float(sys.argv[2])
SEEN = sys.argv[3]


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def answer(self):
        length = int(self.headers.get("Content-Length", "0") or 0)
        if length:
            self.rfile.read(length)
        path = self.path.split("?")[0]
        with open(SEEN, "a") as f:
            f.write("%s key=%s\n" % (path, self.headers.get("X-Keygate-Key-Id", "")))
        if path == "/v1/slow":
            time.sleep(SLOW)
        got = ["%s=%s" % (k.lower(), v) for k, v in self.headers.items()
               if k.lower().startswith("x-keygate-")]
        body = ("upstream %s\n" % " ".join(got)).encode()
        status = {"/v1/fail": 500, "/v1/missing": 404}.get(path, 200)
        try:
            self.send_response(status)
            self.send_header("Content-Type", "text/plain")
            self.send_header("Content-Length", str(len(body)))
            # an upstream's own rate-limit header: the client must see
            # the module's instead, once
            self.send_header("X-RateLimit-Limit", "999999")
            self.end_headers()
            self.wfile.write(body)
        except (BrokenPipeError, ConnectionResetError):
            pass

    do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = answer

    def log_message(self, fmt, *args):
        pass


ThreadingHTTPServer(("127.0.0.1", PORT), Handler).serve_forever()
