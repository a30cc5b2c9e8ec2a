#!/usr/bin/env python3
"""A TCP relay that holds back every answer: bytes from the client go to
the target at once, bytes from the target reach the client DELAY seconds
later.  Put between nginx and keygated, it makes keygated's decision (and
the lease it took) arrive after a client with a short timeout has hung
up.  Usage: slowrelay.py PORT TARGET_PORT DELAY (all on 127.0.0.1)."""
import socket
import sys
import threading
import time

PORT, TARGET, DELAY = int(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3])


def pump(src, dst, delay):
    try:
        while True:
            data = src.recv(65536)
            if not data:
                break
            if delay:
                time.sleep(delay)
            dst.sendall(data)
    except OSError:
        pass
    for s in (src, dst):
        try:
            s.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass


def serve(client):
    try:
        target = socket.create_connection(("127.0.0.1", TARGET))
    except OSError:
        client.close()
        return
    threading.Thread(target=pump, args=(client, target, 0), daemon=True).start()
    pump(target, client, DELAY)
    client.close()
    target.close()


listener = socket.socket()
listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
listener.bind(("127.0.0.1", PORT))
listener.listen(128)
while True:
    conn, _ = listener.accept()
    threading.Thread(target=serve, args=(conn,), daemon=True).start()
