#!/usr/bin/python3
"""A Bearer-token front for a real registry, for image_store_test.

Usage: token_registry.py UPSTREAM_HOST:PORT USER:PASSWORD|- [USES]  (prints its port on stdout)
  /token             issues a token; with USER:PASSWORD it needs those Basic credentials, with "-"
                     it serves anonymous tokens (like Docker Hub).
  /v2/...            needs "Authorization: Bearer <token>", else 401 with a Bearer challenge.
  /v2/*/manifests/*  proxied to the upstream registry.
  /v2/*/blobs/*      307-redirected to the upstream registry (like blob storage on another host).
With USES, a token is accepted for that many requests only (then 401, as if it had expired).
"""
import base64
import http.server
import secrets
import sys
import urllib.error
import urllib.request

UPSTREAM = sys.argv[1]
CREDS = sys.argv[2]
USES = int(sys.argv[3]) if len(sys.argv) > 3 else 1 << 30
TOKENS = {}


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, fmt, *args):
        pass

    def reply(self, code, body=b"", headers=None):
        self.send_response(code)
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self):
        port = self.server.server_address[1]
        if self.path.startswith("/token"):
            if CREDS != "-":
                expected = "Basic " + base64.b64encode(CREDS.encode()).decode()
                if self.headers.get("Authorization") != expected:
                    self.reply(401, b'{"details":"bad credentials"}',
                               {"Content-Type": "application/json"})
                    return
            token = secrets.token_hex(16)
            TOKENS[token] = USES
            self.reply(200, ('{"token": "%s", "expires_in": 300}' % token).encode(),
                       {"Content-Type": "application/json"})
            return
        auth = self.headers.get("Authorization", "")
        token = auth[7:] if auth.startswith("Bearer ") else ""
        if TOKENS.get(token, 0) > 0:
            TOKENS[token] -= 1
        else:
            repo = self.path[4:].split("/manifests/")[0].split("/blobs/")[0]
            challenge = ('Bearer realm="http://127.0.0.1:%d/token",service="clrk-test",'
                         'scope="repository:%s:pull"' % (port, repo))
            self.reply(401, b'{"errors":[{"code":"UNAUTHORIZED","message":"authentication required"}]}',
                       {"WWW-Authenticate": challenge, "Content-Type": "application/json"})
            return
        if "/blobs/" in self.path:
            self.reply(307, b"", {"Location": "http://%s%s" % (UPSTREAM, self.path)})
            return
        request = urllib.request.Request("http://%s%s" % (UPSTREAM, self.path),
                                         headers={"Accept": self.headers.get("Accept", "")})
        try:
            with urllib.request.urlopen(request) as response:
                body = response.read()
                headers = {name: response.headers[name]
                           for name in ("Content-Type", "Docker-Content-Digest")
                           if response.headers[name]}
                self.reply(response.status, body, headers)
        except urllib.error.HTTPError as error:
            self.reply(error.code, error.read(), {"Content-Type": "application/json"})


server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
print(server.server_address[1], flush=True)
server.serve_forever()
