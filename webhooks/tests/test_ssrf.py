"""The SSRF guard on outbound deliveries: a name is resolved once, every address checked,
and the socket connected to a checked address, keeping the name for Host, SNI and the
certificate. A fake resolver plays the DNS; a connect recorder sees every socket's peer."""

import json
import shutil
import socket
import ssl
import subprocess
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from unittest import mock

import pytest

from webhooks import http
from webhooks.models import Delivery, WebhookEndpoint
from webhooks.services import delivery_attempt, endpoint_create, event_emit

pytestmark = pytest.mark.django_db
URL = "/api/v1/webhook-endpoints"
PUBLIC = "93.184.215.14"  # globally routable; the connect recorder refuses it, no network involved


class FakeDNS:
    """getaddrinfo for the names in `answers` (a list of answers, one per lookup, the last
    one repeating; None: the name does not resolve); any other name goes to the real one."""

    def __init__(self, real):
        self.real, self.answers, self.lookups = real, {}, []

    def __call__(self, host, port, family=0, type=0, proto=0, flags=0):
        if host not in self.answers:
            return self.real(host, port, family, type, proto, flags)
        self.lookups.append(host)
        queue = self.answers[host]
        addresses = queue.pop(0) if len(queue) > 1 else queue[0]
        if addresses is None:
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        port = int(port or 0)
        return [
            (socket.AF_INET6, socket.SOCK_STREAM, 6, "", (a, port, 0, 0))
            if ":" in a
            else (socket.AF_INET, socket.SOCK_STREAM, 6, "", (a, port))
            for a in addresses
        ]


@pytest.fixture
def dns(monkeypatch):
    fake = FakeDNS(socket.getaddrinfo)
    monkeypatch.setattr(socket, "getaddrinfo", fake)
    return fake


@pytest.fixture
def connects(monkeypatch):
    """Every address a socket connects to, in order; PUBLIC refuses at once."""
    seen, real = [], socket.socket.connect

    def connect(sock, address):
        seen.append(address[0])
        if address[0] == PUBLIC:
            raise ConnectionRefusedError(111, "Connection refused")
        return real(sock, address)

    monkeypatch.setattr(socket.socket, "connect", connect)
    return seen


@pytest.fixture
def production(settings):
    settings.WEBHOOK_ALLOW_PRIVATE_URLS = False


def _emit_one(merchant):
    with mock.patch("webhooks.tasks.delivery_attempt_task.apply_async"):  # attempted by the test, not inline
        event_emit(merchant=merchant, type="payment.succeeded", data={})
    return Delivery.objects.get()


def test_dns_rebinding_never_reaches_the_address_the_second_answer_names(merchant, receiver, dns, connects, production):
    port = receiver.server.server_port
    # Public to the first lookup, loopback (where an internal service listens) to any later one.
    dns.answers["rebind.test"] = [[PUBLIC], ["127.0.0.1"]]
    WebhookEndpoint.objects.create(
        merchant=merchant, url=f"http://rebind.test:{port}/hook", events=["*"], secret="whsec_x"
    )
    delivery = _emit_one(merchant)
    assert delivery_attempt(delivery_id=delivery.pk) == "retrying"
    assert dns.lookups == ["rebind.test"]  # resolved once...
    assert connects == [PUBLIC]  # ...and connected to that checked answer only
    assert receiver.requests == []
    delivery.refresh_from_db()
    assert "NewConnectionError" in delivery.last_error or "ConnectionError" in delivery.last_error


@pytest.mark.parametrize(
    "addresses,named",
    [
        (["127.0.0.1"], "127.0.0.1, a loopback address"),
        (["169.254.169.254"], "169.254.169.254, a link-local address"),
        ([PUBLIC, "10.0.0.5"], "10.0.0.5, a private address"),  # one private answer refuses the name
    ],
)
def test_a_name_that_now_resolves_privately_is_refused_at_delivery_and_says_which(
    merchant, receiver, dns, connects, production, addresses, named
):
    port = receiver.server.server_port
    WebhookEndpoint.objects.create(
        merchant=merchant, url=f"http://moved.test:{port}/hook", events=["*"], secret="whsec_x"
    )
    dns.answers["moved.test"] = [addresses]
    delivery = _emit_one(merchant)
    assert delivery_attempt(delivery_id=delivery.pk) == "retrying"  # DNS may change back: retried
    assert connects == [] and receiver.requests == []
    delivery.refresh_from_db()
    assert delivery.last_error.startswith("RefusedAddress: ")
    assert f"moved.test resolves to {named}" in delivery.last_error


def test_a_legit_delivery_connects_to_the_resolved_address_with_the_names_host_header(
    merchant, receiver, dns, connects, allow_loopback
):
    port = receiver.server.server_port
    dns.answers["hooks.merchant.test"] = [["127.0.0.1"]]
    endpoint_create(merchant=merchant, url=f"http://hooks.merchant.test:{port}/hook", events=["*"])
    delivery = _emit_one(merchant)
    assert delivery_attempt(delivery_id=delivery.pk) == "delivered"
    assert connects == ["127.0.0.1"]
    assert receiver.requests[0]["headers"]["Host"] == f"hooks.merchant.test:{port}"


def test_redirects_are_not_followed(merchant, receiver, allow_loopback):
    class Redirect(BaseHTTPRequestHandler):
        def do_POST(self):
            self.rfile.read(int(self.headers.get("Content-Length", 0)))
            self.send_response(307)
            self.send_header("Location", receiver.url)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Redirect)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        endpoint_create(merchant=merchant, url=f"http://127.0.0.1:{server.server_port}/hook", events=["*"])
        delivery = _emit_one(merchant)
        assert delivery_attempt(delivery_id=delivery.pk) == "retrying"
    finally:
        server.shutdown()
        server.server_close()
    delivery.refresh_from_db()
    assert delivery.last_response_code == 307 and receiver.requests == []


# --- HTTPS: the socket goes to the checked address, TLS to the name ------------------------


@pytest.fixture
def certificate(tmp_path):
    """A self-signed certificate (and key) for hooks.merchant.test, made by the openssl CLI."""
    if shutil.which("openssl") is None:
        pytest.skip("needs the openssl command to make a certificate")
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
        + ["-keyout", str(key), "-out", str(cert), "-days", "2", "-subj", "/CN=hooks.merchant.test"]
        + ["-addext", "subjectAltName=DNS:hooks.merchant.test"],
        check=True,
        capture_output=True,
    )
    return cert, key


@pytest.fixture
def tls_receiver(certificate):
    """An HTTPS receiver on 127.0.0.1 that records the SNI name and Host header it gets."""
    cert, key = certificate
    seen = {"sni": [], "hosts": []}

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):
            self.rfile.read(int(self.headers.get("Content-Length", 0)))
            seen["hosts"].append(self.headers["Host"])
            body = json.dumps({"ok": True}).encode()
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    context.sni_callback = lambda sslsock, name, ctx: seen["sni"].append(name)
    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    seen["port"] = server.server_port
    yield seen
    server.shutdown()
    server.server_close()


@pytest.fixture
def trust(monkeypatch, certificate):
    monkeypatch.setattr(http.session(), "verify", str(certificate[0]))


def test_https_keeps_the_names_sni_and_certificate_check(merchant, tls_receiver, dns, trust, allow_loopback):
    port = tls_receiver["port"]
    dns.answers["hooks.merchant.test"] = [["127.0.0.1"]]
    endpoint_create(merchant=merchant, url=f"https://hooks.merchant.test:{port}/hook", events=["*"])
    delivery = _emit_one(merchant)
    assert delivery_attempt(delivery_id=delivery.pk) == "delivered"
    assert tls_receiver["sni"] == ["hooks.merchant.test"]
    assert tls_receiver["hosts"] == [f"hooks.merchant.test:{port}"]


def test_https_to_a_name_the_certificate_does_not_cover_fails(merchant, tls_receiver, dns, trust, allow_loopback):
    port = tls_receiver["port"]
    dns.answers["other.merchant.test"] = [["127.0.0.1"]]  # same address, another name: not this certificate's
    endpoint_create(merchant=merchant, url=f"https://other.merchant.test:{port}/hook", events=["*"])
    delivery = _emit_one(merchant)
    assert delivery_attempt(delivery_id=delivery.pk) == "retrying"
    delivery.refresh_from_db()
    assert "SSLError" in delivery.last_error and tls_receiver["hosts"] == []


# --- Registration judges a name as delivery does -----------------------------------------


def test_registration_refuses_a_private_answer_and_says_which(merchant_api, dns, production):
    dns.answers["internal.test"] = [["10.0.0.5"]]
    response = merchant_api.post(URL, {"url": "https://internal.test/hook", "events": ["*"]}, format="json")
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["param"] == "url"
    assert error["message"] == (
        "internal.test resolves to 10.0.0.5, a private address: webhooks are only sent to public addresses."
    )


def test_a_literal_address_is_named_as_such(merchant_api, production):
    response = merchant_api.post(URL, {"url": "http://127.0.0.1:8000/x", "events": ["*"]}, format="json")
    assert response.json()["error"]["message"].startswith("127.0.0.1 is a loopback address")


def test_a_name_that_does_not_resolve_is_accepted_and_its_deliveries_retried_saying_why(
    merchant_api, merchant, dns, production
):
    # Delivery treats a name that does not resolve as a failed attempt (DNS may be late),
    # never as a refusal; so registration accepts it rather than refuse what would be sent.
    dns.answers["not-yet.test"] = [None]
    response = merchant_api.post(URL, {"url": "https://not-yet.test/hook", "events": ["*"]}, format="json")
    assert response.status_code == 201
    delivery = _emit_one(merchant)
    assert delivery_attempt(delivery_id=delivery.pk) == "retrying"
    delivery.refresh_from_db()
    assert "NameResolutionError" in delivery.last_error and "not-yet.test" in delivery.last_error
