"""A local receiver for Paydesk's outbound webhooks, as `stripe listen` is for Stripe's
(`manage.py webhooks_listen`): serves on 127.0.0.1, verifies each delivery's
Paydesk-Signature (HMAC and timestamp tolerance, webhooks.signing) before it parses the
body, prints the event with the verdict, and answers as a receiver would: the chosen
status (2xx by default, or e.g. 500 to watch the retries) for a verified delivery, 400 for
a refused one."""

import json
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from .signing import SignatureVerificationError, verify

HEADER = "Paydesk-Signature"


def _signed_at(header: str | None) -> int | None:
    for item in (header or "").split(","):
        key, _, value = item.strip().partition("=")
        if key == "t" and value.isdigit():
            return int(value)
    return None


def _pretty(body: bytes) -> str:
    try:
        return json.dumps(json.loads(body), indent=2, ensure_ascii=False)
    except ValueError:
        return body.decode("utf-8", "replace")[:2000]


class Listener:
    """The server and what it prints. `write` gets whole blocks of text, one per request."""

    def __init__(
        self,
        *,
        port: int,
        secrets: list[str],
        tolerance: int,
        status: int = 200,
        max_body: int = 1024 * 1024,
        write: Callable[[str], None] = print,
    ):
        self.secrets, self.tolerance, self.status, self.max_body = secrets, tolerance, status, max_body
        self._write, self._lock = write, threading.Lock()
        listener = self

        class Handler(BaseHTTPRequestHandler):
            server_version = "paydesk-webhooks-listen"

            def do_POST(self):
                listener.handle(self)

            def do_GET(self):
                self._answer(200, {"listening": True, "verifies": HEADER})

            def _answer(self, status: int, payload: dict):
                data = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args):
                pass  # each request is printed once, by handle()

        self.server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self.server.daemon_threads = True
        self._serving = False

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_port}/"

    def handle(self, request: BaseHTTPRequestHandler) -> None:
        now = datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%S")
        try:
            length = int(request.headers.get("Content-Length") or 0)
        except ValueError:
            length = -1
        if not 0 <= length <= self.max_body:
            self.print(f"{now}  REFUSED  a body of {request.headers.get('Content-Length')!r} bytes  -> 413")
            return request._answer(413, {"error": "body too large or without Content-Length"})
        body = request.rfile.read(length)
        header = request.headers.get(HEADER)
        try:
            body.decode("utf-8")  # what is signed is the text of the body
            verify(body, header, self.secrets, self.tolerance, header_name=HEADER)
        except (SignatureVerificationError, UnicodeDecodeError) as exc:
            signed = _signed_at(header)
            age = f" (signed {int(time.time()) - signed} s ago, tolerance {self.tolerance} s)" if signed else ""
            self.print(f"{now}  REFUSED  {request.path}: {exc}{age}  -> 400\n{_pretty(body)}")
            return request._answer(400, {"error": f"signature verification failed: {exc}"})
        signed = _signed_at(header)
        try:
            event = json.loads(body)
        except ValueError:
            event = {}
        event = event if isinstance(event, dict) else {}
        age = f", signed {int(time.time()) - signed} s ago" if signed is not None else ""
        self.print(
            f"{now}  {event.get('type', '?')}  {event.get('id', '?')}  verified{age}  -> {self.status}\n{_pretty(body)}"
        )
        request._answer(self.status, {"received": True})

    def print(self, text: str) -> None:
        with self._lock:
            self._write(text)

    def serve_forever(self) -> None:
        self._serving = True
        try:
            self.server.serve_forever()
        finally:
            self._serving = False

    def close(self) -> None:
        if self._serving:  # shutdown() waits for a serve_forever() loop to end
            self.server.shutdown()
        self.server.server_close()
