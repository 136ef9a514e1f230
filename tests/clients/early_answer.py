"""An upload that goes on after its answer came: a POST whose body (Content-Length TOTAL bytes)
is sent in two parts, FIRST bytes, a pause of PAUSE_MS (the upstream answers meanwhile without
reading the body), then MORE bytes; only then is the answer read. A proxy that closes the
connection as soon as it answered, with the client's bytes unread, makes the kernel reset it, and
the client loses the answer it had not read yet.

Env: PROXY=host:port (explicit proxy: absolute-URI form for http://, CONNECT then TLS trusting
CA_FILE for https://), URL, FIRST, MORE, TOTAL (bytes), PAUSE_MS. Prints {"ok":true,"status":N,"body":...} or {"ok":false,"error":...}.
Run with /usr/bin/python3 (standard library only).
"""
import json
import os
import socket
import ssl
import sys
import time
from urllib.parse import urlsplit


def main():
    host, port = os.environ["PROXY"].rsplit(":", 1)
    url = os.environ["URL"]
    first = int(os.environ.get("FIRST", str(1 << 20)))
    more = int(os.environ.get("MORE", str(1 << 20)))
    total = int(os.environ.get("TOTAL", str(16 << 20)))
    pause = int(os.environ.get("PAUSE_MS", "300")) / 1000.0
    conn = socket.create_connection((host, int(port)), timeout=10)
    parts = urlsplit(url)
    target = url
    if parts.scheme == "https":
        authority = f"{parts.hostname}:{parts.port or 443}"
        conn.sendall(f"CONNECT {authority} HTTP/1.1\r\nHost: {authority}\r\n\r\n".encode())
        reply = b""
        while b"\r\n\r\n" not in reply:
            piece = conn.recv(1)
            if not piece:
                raise SystemExit(json.dumps({"ok": False, "error": "CONNECT: connection closed"}))
            reply += piece
        if not reply.startswith(b"HTTP/1.1 200"):
            raise SystemExit(json.dumps({"ok": False, "error": reply.decode(errors="replace")}))
        context = ssl.create_default_context(cafile=os.environ["CA_FILE"])
        context.set_alpn_protocols(["http/1.1"])
        conn = context.wrap_socket(conn, server_hostname=parts.hostname)
        target = parts.path or "/"
    head = (f"POST {target} HTTP/1.1\r\nHost: {parts.netloc}\r\n"
            f"Content-Type: application/octet-stream\r\nContent-Length: {total}\r\n\r\n")
    conn.sendall(head.encode() + b"u" * first)
    time.sleep(pause)
    send_error = None
    try:
        conn.sendall(b"u" * more)
    except OSError as error:
        send_error = str(error)
    time.sleep(pause)
    answer = b""
    try:
        while True:
            piece = conn.recv(65536)
            if not piece:
                break
            answer += piece
    except OSError as error:
        print(json.dumps({"ok": False, "error": f"reading the answer: {error}",
                          "received": len(answer), "send_error": send_error}))
        sys.exit(1)
    head, _, body = answer.partition(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1]) if head.startswith(b"HTTP/1.1 ") else 0
    print(json.dumps({"ok": True, "status": status, "body": body.decode(errors="replace"),
                      "head": head.decode(errors="replace"), "send_error": send_error}))


main()
