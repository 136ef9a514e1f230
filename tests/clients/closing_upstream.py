"""A plain HTTP/1.1 upstream that closes every connection CLOSE_MS (50) after its first answer,
without saying so (no "Connection: close"): a server with a short keep-alive timeout. A proxy
that pools the connection finds it closed on its next request.

Answers every request with {"conn":N,"method":..,"bytes":<body bytes>} (N counts connections
from 1). Prints {"port":P} once listening on 127.0.0.1, serves until stdin closes.
Run with /usr/bin/python3 (standard library only).
"""
import json
import os
import socket
import sys
import threading
import time


def read_request(conn):
    """Returns (method, body) of one request, or None when the peer closed."""
    data = b""
    while b"\r\n\r\n" not in data:
        piece = conn.recv(65536)
        if not piece:
            return None
        data += piece
    head, _, rest = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    method = lines[0].split(" ", 1)[0]
    length = 0
    chunked = False
    for line in lines[1:]:
        name, _, value = line.partition(":")
        if name.strip().lower() == "content-length":
            length = int(value.strip())
        if name.strip().lower() == "transfer-encoding" and "chunked" in value.lower():
            chunked = True
    body = rest
    if chunked:
        while not body.endswith(b"0\r\n\r\n"):
            piece = conn.recv(65536)
            if not piece:
                return None
            body += piece
        return method, len(body)
    while len(body) < length:
        piece = conn.recv(65536)
        if not piece:
            return None
        body += piece
    return method, len(body)


def serve(conn, number, close_after):
    with conn:
        request = read_request(conn)
        if request is None:
            return
        method, size = request
        answer = json.dumps({"conn": number, "method": method, "bytes": size}).encode()
        conn.sendall(b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n"
                     b"content-length: %d\r\n\r\n%s" % (len(answer), answer))
        time.sleep(close_after)


def main():
    close_after = int(os.environ.get("CLOSE_MS", "50")) / 1000.0
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(64)
    print(json.dumps({"port": listener.getsockname()[1]}), flush=True)

    def accept_loop():
        number = 0
        while True:
            conn, _ = listener.accept()
            number += 1
            threading.Thread(target=serve, args=(conn, number, close_after), daemon=True).start()

    threading.Thread(target=accept_loop, daemon=True).start()
    sys.stdin.read()  # until the test closes our stdin


if __name__ == "__main__":
    main()
