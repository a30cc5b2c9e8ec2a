#!/usr/bin/env python3
"""A stand-in API for the gateway tests: answers every request with the
X-Keygate-* headers it received, and first ends the request's concurrency
lease with DELETE /leases/<id> on keygated (what a real upstream does when
its work is done).  Usage: upstream.py PORT KEYGATED_URL"""
import http.client
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlparse

PORT = int(sys.argv[1])
KEYGATED = urlparse(sys.argv[2])


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def answer(self):
        lease = self.headers.get("X-Keygate-Lease", "")
        released = "none"
        if lease:
            c = http.client.HTTPConnection(KEYGATED.hostname, KEYGATED.port, timeout=5)
            c.request("DELETE", "/leases/" + lease)
            released = str(c.getresponse().status)
            c.close()
        body = ("upstream key=%s plan=%s priority=%s released=%s account=%s\n" % (
            self.headers.get("X-Keygate-Key-Id", ""),
            self.headers.get("X-Keygate-Plan", ""),
            self.headers.get("X-Keygate-Priority", ""), released,
            self.headers.get("X-Keygate-Account", ""))).encode()
        length = int(self.headers.get("Content-Length", "0") or 0)
        if length:
            self.rfile.read(length)
        self.send_response(200)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = answer

    def log_message(self, fmt, *args):
        pass


ThreadingHTTPServer(("127.0.0.1", PORT), Handler).serve_forever()
