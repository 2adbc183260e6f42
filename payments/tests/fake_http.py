"""A tiny HTTP server on 127.0.0.1 answering from a routing table, to fake a provider at
the HTTP layer (our code and stripe-python run for real, only the far end is canned)."""

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs


class FakeHTTP:
    def __init__(self, routes: dict):
        """routes: {("POST", "/v1/checkout/sessions"): (status, body dict) or callable(request) -> (status, body)}"""
        self.routes = routes
        self.requests: list[dict] = []
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def _handle(self):
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length).decode() if length else ""
                ctype = self.headers.get("Content-Type", "")
                body = json.loads(raw) if "json" in ctype and raw else parse_qs(raw)
                request = {
                    "method": self.command,
                    "path": self.path.split("?")[0],
                    "headers": dict(self.headers),
                    "body": body,
                }
                fake.requests.append(request)
                route = fake.routes.get((self.command, request["path"]))
                status, payload = (
                    (404, {"error": {"message": "no route"}})
                    if route is None
                    else (route(request) if callable(route) else route)
                )
                data = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_POST = _handle

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()
