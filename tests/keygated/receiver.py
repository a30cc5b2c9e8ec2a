#!/usr/bin/env python3
"""receiver.py PORT DIR [STATUS] - a webhook receiver for the alerts
tests, on 127.0.0.1:PORT.  Each POST is kept as DIR/N.headers ("Name:
value" lines, as received), DIR/N.path (the request's path) and
DIR/N.body (the bytes as received), N
counting from 1, and answered STATUS (default 200).  Prints "ready" once
it listens."""
import http.server
import os
import sys

PORT, DIR = int(sys.argv[1]), sys.argv[2]
STATUS = int(sys.argv[3]) if len(sys.argv) > 3 else 200


class Handler(http.server.BaseHTTPRequestHandler):
    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        n = len([f for f in os.listdir(DIR) if f.endswith(".body")]) + 1
        with open(os.path.join(DIR, "%d.headers" % n), "w") as f:
            for name, value in self.headers.items():
                f.write("%s: %s\n" % (name, value))
        with open(os.path.join(DIR, "%d.path" % n), "w") as f:
            f.write(self.path + "\n")
        # The body last: a test that sees it sees the headers too.
        tmp = os.path.join(DIR, ".%d.tmp" % n)
        with open(tmp, "wb") as f:
            f.write(body)
        os.rename(tmp, os.path.join(DIR, "%d.body" % n))
        self.send_response(STATUS)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args):
        pass


server = http.server.HTTPServer(("127.0.0.1", PORT), Handler)
print("ready", flush=True)
server.serve_forever()
