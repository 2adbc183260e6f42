"""Outbound HTTP for deliveries: one keep-alive session per worker process, and a total
deadline on every send.

requests' `timeout` bounds each socket operation, not the exchange: a receiver that
drips a byte every few seconds keeps a worker as long as it likes, and outlives the
claim lease, so another worker would send the same delivery again. Here a watchdog
thread shuts the connection's socket down when the deadline passes, which ends a
blocked connect, send or read at once. The connections a send uses are found through
a urllib3 connection class that registers itself, per thread, when a request starts.

The same connection class opens its socket to an address webhooks.ssrf has resolved
and checked, once: never to whatever a second lookup of the name answers (DNS
rebinding). Only the socket's peer is chosen here; urllib3 still uses the URL's host
for the Host header, TLS SNI and certificate verification, and for the pool key.
Redirects are not followed (a 3xx is a failed attempt), so there is no second hop to check.
"""

import contextlib
import socket
import sys
import threading
from dataclasses import dataclass

import requests
from requests.adapters import HTTPAdapter
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool
from urllib3.exceptions import ConnectTimeoutError, NameResolutionError, NewConnectionError
from urllib3.util import Timeout

from . import ssrf

MAX_RESPONSE_BYTES = 64 * 1024  # read (and keep) no more of a receiver's answer than this

_local = threading.local()


class _Registering:
    def request(self, *args, **kwargs):
        watched = getattr(_local, "connections", None)
        if watched is not None:
            watched.append(self)
        return super().request(*args, **kwargs)


class _Pinned:
    """Opens the socket to an address checked by ssrf.resolve, from the one lookup of the
    name. Overrides urllib3's `_new_conn` (the hook its own SOCKS connection overrides),
    raising the same exceptions for a name that does not resolve, a timeout or a refused
    connection; a refused address raises ssrf.RefusedAddress, which nothing retries."""

    def _new_conn(self) -> socket.socket:
        allow_private = getattr(_local, "allow_private", False)
        try:
            entries = ssrf.resolve(self._dns_host, self.port, allow_private=allow_private)
        except socket.gaierror as exc:
            raise NameResolutionError(self.host, self, exc) from exc
        error: OSError | None = None
        for family, kind, proto, _, sockaddr in entries:  # as socket.create_connection, on these only
            sock = None
            try:
                sock = socket.socket(family, kind, proto)
                for option in self.socket_options or ():
                    sock.setsockopt(*option)
                if self.timeout is not Timeout.DEFAULT_TIMEOUT:
                    sock.settimeout(self.timeout)
                if self.source_address:
                    sock.bind(self.source_address)
                sock.connect(sockaddr)
            except TimeoutError as exc:  # no next address: one timeout is already the whole deadline
                if sock is not None:
                    sock.close()
                raise ConnectTimeoutError(
                    self, f"Connection to {self.host} ({sockaddr[0]}) timed out. (connect timeout={self.timeout})"
                ) from exc
            except OSError as exc:
                if sock is not None:
                    sock.close()
                error = exc
                continue
            sys.audit("http.client.connect", self, self.host, self.port)
            return sock
        raise NewConnectionError(self, f"Failed to establish a new connection: {error}") from error


class _HTTPConnection(_Registering, _Pinned, HTTPConnection):
    pass


class _HTTPSConnection(_Registering, _Pinned, HTTPSConnection):
    pass


class _HTTPPool(HTTPConnectionPool):
    ConnectionCls = _HTTPConnection


class _HTTPSPool(HTTPSConnectionPool):
    ConnectionCls = _HTTPSConnection


class _Adapter(HTTPAdapter):
    def init_poolmanager(self, *args, **kwargs):
        super().init_poolmanager(*args, **kwargs)
        self.poolmanager.pool_classes_by_scheme = {"http": _HTTPPool, "https": _HTTPSPool}


class DeadlineExceeded(Exception):
    pass


@dataclass
class Answer:
    status: int
    body: bytes
    encoding: str | None

    def text(self, limit: int) -> str:
        return self.body.decode(self.encoding or "utf-8", "replace")[:limit]


_session: requests.Session | None = None


def session() -> requests.Session:
    """One per worker process: keep-alive to endpoints, and no proxy lookup in the
    environment on every send (trust_env off: deliveries go straight to the merchant)."""
    global _session
    if _session is None:
        s = requests.Session()
        s.trust_env = False
        s.mount("http://", _Adapter())
        s.mount("https://", _Adapter())
        _session = s
    return _session


def _shut(connections: list) -> None:
    for conn in list(connections):
        sock = getattr(conn, "sock", None)
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)


def post(url: str, *, body: bytes, headers: dict, deadline: float, allow_private: bool = False) -> Answer:
    """POST and read the answer (up to MAX_RESPONSE_BYTES), all within `deadline`
    seconds, to an address that is public (any, with `allow_private`). Raises
    DeadlineExceeded, ssrf.RefusedAddress, or requests' exceptions (refused, reset...)."""
    connections: list = []
    done, expired = threading.Event(), threading.Event()

    def watchdog():
        if done.wait(deadline):
            return
        expired.set()
        while not done.is_set():  # again and again: the socket may not exist yet
            _shut(connections)
            done.wait(0.05)

    _local.connections, _local.allow_private = connections, allow_private
    guard = threading.Thread(target=watchdog, name="delivery-deadline", daemon=True)
    guard.start()
    try:
        response = session().post(url, data=body, headers=headers, timeout=deadline, allow_redirects=False, stream=True)
        try:
            chunks, size = [], 0
            for chunk in response.iter_content(chunk_size=8192):
                chunks.append(chunk)
                size += len(chunk)
                if size >= MAX_RESPONSE_BYTES:
                    break
        finally:
            response.close()  # fully read: back to the pool; cut short: connection dropped
        # The status line and headers arrived in time, so the receiver's answer is known
        # even if the watchdog cut a dripping body short.
        return Answer(response.status_code, b"".join(chunks)[:MAX_RESPONSE_BYTES], response.encoding)
    except Exception as exc:
        if expired.is_set():
            raise DeadlineExceeded(f"no complete answer within {deadline:g} s") from exc
        raise
    finally:
        done.set()
        _local.connections, _local.allow_private = None, False
