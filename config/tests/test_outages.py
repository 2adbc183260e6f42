"""The cache and the broker down, with real processes: a redis-server this module starts on
a free port and kills (or stops with SIGSTOP, so it hangs: connections open, nothing
answers), gunicorn web processes pointed at it, PostgreSQL.

What a merchant relies on: with Redis gone, payments, customers and wallet moves still
answer 2xx (throttles count in memory), nothing waits on a dead socket for long, an
outbox row committed by a request waits for the sweep instead of failing the request,
/healthz names what is down, and the ledger stays balanced.
"""

import contextlib
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import pytest
import requests
from django.db import connection

from config.api.throttling import throttle_cache
from webhooks.models import Delivery
from webhooks.services import deliveries_due_ids, enqueue_resume

ROOT = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.skipif(shutil.which("redis-server") is None, reason="redis-server is not on PATH")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class RedisServer:
    """A redis-server of this test's own, on a free port, with nothing persisted."""

    def __init__(self):
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.process = None

    def start(self) -> "RedisServer":
        self.process = subprocess.Popen(
            ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", self.port), 0.5) as s:
                s.sendall(b"PING\r\n")
                if s.recv(16).startswith(b"+PONG"):
                    return self
            time.sleep(0.05)
        raise RuntimeError("redis-server did not start")

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGCONT)  # a stopped process cannot die until continued
            self.process.kill()
            self.process.wait(timeout=10)

    def pause(self) -> None:
        """SIGSTOP: the kernel still accepts connections, the server answers nothing."""
        self.process.send_signal(signal.SIGSTOP)


@pytest.fixture
def redis_server():
    server = RedisServer().start()
    try:
        yield server
    finally:
        server.kill()


@pytest.fixture(autouse=True)
def _forget_outages():
    """This process's throttle fallback and broker pause outlive a test: reset both."""
    throttle_cache.clear()
    enqueue_resume()
    yield
    throttle_cache.clear()
    enqueue_resume()


class Web:
    """A gunicorn web process on the test database, with `env` on top."""

    def __init__(self, env: dict):
        db = connection.settings_dict
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        full_env = {
            **os.environ,
            "DATABASE_URL": f"postgres://{db['USER']}@{db['HOST'] or '127.0.0.1'}:{db['PORT'] or 5432}/{db['NAME']}",
            "WEBHOOK_ALLOW_PRIVATE_URLS": "1",
            "LOG_LEVEL": "WARNING",
            **env,
        }
        for name in ("REDIS_URL", "CELERY_BROKER_URL", "CELERY_TASK_ALWAYS_EAGER"):
            if full_env.get(name) is None:
                full_env.pop(name, None)
        self.process = subprocess.Popen(
            [sys.executable, "-m", "gunicorn", "config.wsgi", "--bind", f"127.0.0.1:{self.port}", "--workers", "1"],
            cwd=ROOT,
            env=full_env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            assert self.process.poll() is None, self.output()
            with contextlib.suppress(requests.RequestException):
                requests.get(f"{self.base}/api/v1/payments/ping", timeout=2)
                return
            time.sleep(0.2)
        raise RuntimeError(f"gunicorn did not start: {self.output()}")

    def call(self, method: str, path: str, key: str, body: dict | None = None, *, within: float = 10.0):
        """One request that must be answered within `within` seconds (a hung dependency
        would hold it for ever)."""
        headers = {"Authorization": f"Bearer {key}", "Idempotency-Key": uuid.uuid4().hex}
        started = time.monotonic()
        try:
            response = requests.request(method, self.base + path, json=body, headers=headers, timeout=within)
        except requests.Timeout:
            pytest.fail(f"{method} {path} not answered within {within} s")
        elapsed = time.monotonic() - started
        return response, elapsed

    def output(self) -> str:
        if self.process.poll() is None:
            return ""
        return self.process.stdout.read().decode()[-3000:]

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.process.kill()


@contextlib.contextmanager
def web_process(**env):
    web = Web(env)
    try:
        yield web
    finally:
        web.stop()


def _assert_2xx(response, what: str) -> dict:
    assert 200 <= response.status_code < 300, f"{what}: {response.status_code} {response.text[:500]}"
    return response.json()


def _merchant_with_endpoint(merchant_key_for):
    """A merchant key, a customer with a funded wallet, and an endpoint subscribed to every
    event (on a port nothing listens on: deliveries are made, never delivered)."""
    from payments.tests.factories import CustomerFactory, MerchantFactory
    from webhooks.services import endpoint_create

    merchant = MerchantFactory()
    key = merchant_key_for(merchant)
    customer = CustomerFactory(merchant=merchant)
    endpoint_create(merchant=merchant, url=f"http://127.0.0.1:{free_port()}/hook", events=["*"])
    return merchant, key, customer


@pytest.fixture
def merchant_key_for():
    from payments.identity.services import api_key_create

    return lambda merchant: api_key_create(merchant=merchant)[1]


def _money_calls(web, key, customer, tag: str, *, within: float) -> list[float]:
    """The calls a cache outage must not stop; returns how long each took."""
    timings = []
    calls = [
        ("GET", "/api/v1/customers", None),
        ("POST", "/api/v1/customers", {"external_id": f"new-{tag}"}),
        ("POST", "/api/v1/payments", {"order_id": f"order-{tag}", "amount": 1500, "currency": "usd"}),
        ("POST", f"/api/v1/wallets/{customer.pk}/credit", {"amount": 700, "currency": "usd"}),
        ("POST", f"/api/v1/wallets/{customer.pk}/debit", {"amount": 200, "currency": "usd"}),
    ]
    for method, path, body in calls:
        response, elapsed = web.call(method, path, key, body, within=within)
        _assert_2xx(response, f"{method} {path}")
        timings.append(elapsed)
    return timings


def _assert_ledger_clean():
    from wallets.selectors import ledger_audit

    report = ledger_audit()
    assert report["ok"], report["violations"]


def _undelivered_since(merchant, since_count: int) -> list[Delivery]:
    return list(Delivery.objects.filter(event__merchant_id=merchant.pk).order_by("event__created_at")[since_count:])


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_redis_killed_the_api_keeps_taking_payments(redis_server, merchant_key_for):
    """One Redis for cache and broker (docker-compose's shape), killed mid-traffic."""
    merchant, key, customer = _merchant_with_endpoint(merchant_key_for)
    with web_process(REDIS_URL=redis_server.url) as web:
        _assert_2xx(web.call("POST", "/api/v1/wallets", key, {"customer": str(customer.pk), "currency": "usd"})[0], "w")
        _money_calls(web, key, customer, "before", within=10)
        health = requests.get(f"{web.base}/healthz", timeout=10).json()
        assert health["checks"]["cache"] == "ok" and health["checks"]["broker"] == "ok"
        sent_before = Delivery.objects.filter(event__merchant_id=merchant.pk).count()

        redis_server.kill()

        timings = _money_calls(web, key, customer, "after", within=10)
        assert max(timings) < 5, timings  # a refused connection fails at once

        health = requests.get(f"{web.base}/healthz", timeout=10)
        assert health.status_code == 200, health.text
        body = health.json()
        assert body["checks"]["database"] == "ok"
        assert body["checks"]["cache"] == "unavailable" and body["checks"]["broker"] == "unavailable"
        assert set(body["degraded"]) == {"cache", "broker"} and "failing" not in body

    # The wallet moves after the kill emitted events: their deliveries are committed and
    # untried, left for the sweep, which finds them due.
    waiting = _undelivered_since(merchant, sent_before)
    assert {d.event.type for d in waiting} >= {"wallet.credited", "wallet.debited"}
    assert all(d.status == Delivery.Status.PENDING and d.attempts == 0 for d in waiting)
    assert {str(d.pk) for d in waiting} <= set(deliveries_due_ids())
    _assert_ledger_clean()


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_redis_hung_requests_are_answered_not_held(redis_server, merchant_key_for):
    """Redis stopped (SIGSTOP): every connection opens and nothing ever answers. redis-py
    and kombu would wait for ever; the socket timeouts and the fallbacks bound it."""
    merchant, key, customer = _merchant_with_endpoint(merchant_key_for)
    with web_process(REDIS_URL=redis_server.url) as web:
        _assert_2xx(web.call("POST", "/api/v1/wallets", key, {"customer": str(customer.pk), "currency": "usd"})[0], "w")
        _money_calls(web, key, customer, "before", within=10)
        sent_before = Delivery.objects.filter(event__merchant_id=merchant.pk).count()

        redis_server.pause()

        # The first requests pay the timeouts once (the cache's 0.5 s; a send's 2 s, on the
        # pooled connection then on a new one), then this process counts in memory and
        # leaves outbox rows to the sweep: no further waits.
        first = _money_calls(web, key, customer, "hung-1", within=15)
        again = _money_calls(web, key, customer, "hung-2", within=15)
        assert first[0] < 2, first  # GET /customers: the throttle's cache read only (redis-py's own default: 5 s)
        assert sum(first) < 12, first
        assert max(again) < 1.5, again

        health = requests.get(f"{web.base}/healthz", timeout=20)
        assert health.status_code == 200, health.text
        assert set(health.json()["degraded"]) == {"cache", "broker"}

    waiting = _undelivered_since(merchant, sent_before)
    assert len(waiting) >= 4 and all(d.status == Delivery.Status.PENDING and d.attempts == 0 for d in waiting)
    _assert_ledger_clean()


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_broker_down_a_request_that_emits_an_event_still_answers_and_the_row_waits(merchant_key_for):
    """A broker on a closed port, not eager, the cache in memory: the wallet credit
    commits its outbox row, the send fails, the request answers 200, the row waits."""
    merchant, key, customer = _merchant_with_endpoint(merchant_key_for)
    with web_process(CELERY_BROKER_URL=f"redis://127.0.0.1:{free_port()}/0", CELERY_TASK_ALWAYS_EAGER="0") as web:
        _assert_2xx(web.call("POST", "/api/v1/wallets", key, {"customer": str(customer.pk), "currency": "usd"})[0], "w")
        response, _ = web.call("POST", f"/api/v1/wallets/{customer.pk}/credit", key, {"amount": 900, "currency": "usd"})
        assert _assert_2xx(response, "credit")["balance"] == 900
        health = requests.get(f"{web.base}/healthz", timeout=10)
        assert health.status_code == 200 and health.json()["checks"]["broker"] == "unavailable"
    delivery = Delivery.objects.get(event__merchant_id=merchant.pk, event__type="wallet.credited")
    assert delivery.status == Delivery.Status.PENDING and delivery.attempts == 0
    assert str(delivery.pk) in deliveries_due_ids()
    _assert_ledger_clean()


# --- In this process: the throttles' fallback, the error handler -------------------------


@pytest.fixture
def redis_cache(settings, redis_server):
    settings.REDIS_URL = redis_server.url
    settings.CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": redis_server.url,
            "OPTIONS": {"socket_connect_timeout": 0.5, "socket_timeout": 0.5},
        }
    }
    return redis_server


def _warnings(caplog, text: str) -> int:
    return sum(1 for r in caplog.records if r.levelno == logging.WARNING and text in r.getMessage())


@pytest.mark.django_db
def test_throttle_counts_in_memory_while_the_cache_is_down(redis_cache, settings, merchant_api, caplog):
    """Not fail-open: over the rate is still 429 with Retry-After while Redis is gone, and
    the switch is one warning, not one per request."""
    settings.API_THROTTLE_RATE = "3/min"
    assert merchant_api.get("/api/v1/customers").status_code == 200  # counted in Redis
    redis_cache.kill()
    caplog.set_level(logging.INFO, logger="paydesk.api")
    assert [merchant_api.get("/api/v1/customers").status_code for _ in range(4)] == [200, 200, 200, 429]
    refused = merchant_api.get("/api/v1/customers")
    assert refused.status_code == 429 and refused.json()["error"]["type"] == "rate_limit_error"
    assert int(refused["Retry-After"]) > 0
    assert _warnings(caplog, "cache unavailable") == 1


@pytest.mark.django_db
def test_throttle_goes_back_to_the_shared_cache_when_it_answers_again(redis_cache, settings, merchant_api, caplog):
    settings.API_THROTTLE_RATE = "100/min"
    throttle_cache.retry_after = 0.0
    try:
        redis_cache.kill()
        assert merchant_api.get("/api/v1/customers").status_code == 200
        redis_cache.start()  # the same port again
        caplog.set_level(logging.INFO, logger="paydesk.api")
        assert merchant_api.get("/api/v1/customers").status_code == 200
        import redis

        keys = redis.Redis.from_url(redis_cache.url).keys("*throttle_api_*")
        assert keys, "the request after the cache came back was counted in the shared cache"
        assert any("cache available again" in r.getMessage() for r in caplog.records)
    finally:
        throttle_cache.retry_after = 5.0


@pytest.mark.django_db
def test_auth_failures_are_still_throttled_while_the_cache_is_down(redis_cache, settings, merchant_key):
    from rest_framework.test import APIClient

    settings.AUTH_FAILURE_THROTTLE_RATE = "2/min"
    redis_cache.kill()
    bad = APIClient()
    bad.credentials(HTTP_AUTHORIZATION="Bearer pd_test_" + "x" * 40)
    assert [bad.get("/api/v1/customers").status_code for _ in range(3)] == [401, 401, 429]
    good = APIClient()
    good.credentials(HTTP_AUTHORIZATION=f"Bearer {merchant_key}")
    assert good.get("/api/v1/customers").status_code == 200


@pytest.mark.django_db
@pytest.mark.urls("config.tests.urls")
def test_a_view_that_needs_the_cache_answers_a_retryable_503_in_shape(redis_cache, api):
    assert api.get("/api/v1/_test/needs/cache").status_code == 200
    redis_cache.kill()
    response = api.get("/api/v1/_test/needs/cache")
    assert response.status_code == 503 and response["Retry-After"] == "1"
    error = response.json()["error"]
    assert error["type"] == "service_unavailable" and error["code"] == "service_unavailable"
    assert "cache" in error["message"] and str(redis_cache.port) not in error["message"]


@pytest.mark.django_db
@pytest.mark.urls("config.tests.urls")
def test_a_view_that_sends_a_task_with_the_broker_down_answers_a_retryable_503(api, settings):
    from config.celery import app

    settings.CELERY_TASK_ALWAYS_EAGER = False
    saved = app.conf.broker_url
    app.conf.broker_url = f"redis://127.0.0.1:{free_port()}/0"
    app._pool = app.amqp._producer_pool = None  # connect to the broker just configured
    try:
        response = api.get("/api/v1/_test/needs/broker")
    finally:
        app.conf.broker_url = saved
        app._pool = app.amqp._producer_pool = None
    assert response.status_code == 503 and response["Retry-After"] == "1"
    error = response.json()["error"]
    assert error["type"] == "service_unavailable" and "broker" in error["message"]


class RefusingBroker:
    """A "broker" that accepts each connection and closes it at once, counting them."""

    def __init__(self):
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(50)
        self.url = f"redis://127.0.0.1:{self.sock.getsockname()[1]}/0"
        self.connections = 0
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self):
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.connections += 1
            conn.close()

    def close(self):
        self.sock.close()


@pytest.mark.django_db
def test_after_a_send_fails_this_process_leaves_rows_to_the_sweep_for_a_while(
    merchant, settings, django_capture_on_commit_callbacks
):
    """One failed send, not one per row: the other deliveries of the request, and of the
    requests after it, wait for the sweep without trying the broker again. Eager (no
    broker) nothing is paused."""
    from config.celery import app
    from webhooks.services import endpoint_create, enqueue, events_emit
    from webhooks.tasks import delivery_attempt_task

    endpoint_create(merchant=merchant, url=f"http://127.0.0.1:{free_port()}/hook", events=["*"])
    settings.CELERY_TASK_ALWAYS_EAGER = False
    broker, saved = RefusingBroker(), app.conf.broker_url
    app.conf.broker_url = broker.url
    app._pool = app.amqp._producer_pool = None
    try:
        with django_capture_on_commit_callbacks(execute=True):
            events_emit(merchant=merchant, events=[("payment.succeeded", {"n": n}) for n in range(5)])
        with django_capture_on_commit_callbacks(execute=True):
            events_emit(merchant=merchant, events=[("payment.failed", {})])
    finally:
        broker.close()
        app.conf.broker_url = saved
        app._pool = app.amqp._producer_pool = None
    assert 1 <= broker.connections <= 3, broker.connections  # one send and its retry, not six sends
    assert set(Delivery.objects.values_list("status", "attempts")) == {("pending", 0)}
    assert len(deliveries_due_ids()) == 6
    settings.CELERY_TASK_ALWAYS_EAGER = True
    assert enqueue(delivery_attempt_task, deliveries_due_ids()[0]) is True  # ran inline
