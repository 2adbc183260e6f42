"""`manage.py webhooks_listen` as a real process: it verifies and prints a real delivery
(from the delivery service, and from a running Celery worker), refuses forged and stale
ones, answers the status asked for, and registers itself for a merchant."""

import json
import os
import re
import socket
import subprocess
import sys
import threading
import time
import uuid

import pytest
import requests
from django.db import connection

from config.tests.test_settings_and_commands import PROD_ENV, manage
from webhooks.models import Delivery, WebhookEndpoint
from webhooks.services import delivery_attempt, endpoint_create, event_emit
from webhooks.signing import sign
from webhooks.tests.support import BROKERS, ROOT, broker_reachable, real_broker, start_worker


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class ListenerProcess:
    """`manage.py webhooks_listen ARGS` in a subprocess; its output collected as it comes."""

    def __init__(self, *args: str, database: bool = False):
        env = {**os.environ, "PYTHONUNBUFFERED": "1", "WEBHOOK_ALLOW_PRIVATE_URLS": "1"}
        if database:  # the test database, where the test's committed rows are
            db = connection.settings_dict
            env["DATABASE_URL"] = (
                f"postgres://{db['USER']}@{db['HOST'] or '127.0.0.1'}:{db['PORT'] or 5432}/{db['NAME']}"
            )
        self.process = subprocess.Popen(
            [sys.executable, "manage.py", "webhooks_listen", *args],
            cwd=ROOT,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        self.lines: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        ready = self.wait_for(r"Ready! Listening on (http://127\.0\.0\.1:\d+/)")
        self.url = ready.group(1)

    def _read(self):
        for line in self.process.stdout:
            self.lines.append(line)

    @property
    def output(self) -> str:
        return "".join(self.lines)

    def wait_for(self, pattern: str, timeout: float = 60) -> re.Match:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            match = re.search(pattern, self.output)
            if match:
                return match
            if self.process.poll() is not None and not self._reader.is_alive():
                break
            time.sleep(0.05)
        raise AssertionError(f"no {pattern!r} in the listener's output:\n{self.output}")

    def stop(self):
        self.process.terminate()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()


@pytest.fixture
def listen():
    started = []

    def start(*args, **kwargs) -> ListenerProcess:
        started.append(ListenerProcess(*args, **kwargs))
        return started[-1]

    yield start
    for process in started:
        process.stop()


@pytest.fixture
def local_endpoint(merchant, allow_loopback):
    """An endpoint of the merchant on a free local port, for a listener to take."""
    port = free_port()
    return endpoint_create(merchant=merchant, url=f"http://127.0.0.1:{port}/", events=["*"]), port


def _signed(body: str, secret: str, **kwargs) -> dict:
    return {"Content-Type": "application/json", "Paydesk-Signature": sign(body, secret, **kwargs)}


@pytest.mark.django_db
def test_it_verifies_and_prints_a_real_delivery_and_refuses_forged_and_stale_ones(merchant, local_endpoint, listen):
    endpoint, port = local_endpoint
    listener = listen("--port", str(port), "--secret", endpoint.secret)
    event = event_emit(merchant=merchant, type="payment.succeeded", data={"payment": "pay_1", "amount": 2599})
    delivery = Delivery.objects.get(event=event)
    assert delivery_attempt(delivery_id=delivery.pk) == "delivered"
    printed = listener.wait_for(rf"payment\.succeeded  {event.id}  verified, signed \d+ s ago  -> 200\n")
    assert '"amount": 2599' in listener.output[printed.end() :]

    body = json.dumps({"id": str(uuid.uuid4()), "type": "payment.succeeded", "created": 0, "data": {"forged": 1}})
    forged = requests.post(listener.url, data=body, headers=_signed(body, "whsec_not_the_secret"), timeout=10)
    assert forged.status_code == 400
    listener.wait_for(r"REFUSED  /: No signatures found matching the expected signature.*-> 400")
    stale = requests.post(
        listener.url, data=body, headers=_signed(body, endpoint.secret, timestamp=int(time.time()) - 3600), timeout=10
    )
    assert stale.status_code == 400
    listener.wait_for(r"REFUSED  /: Timestamp outside the tolerance zone.*signed 36\d\d s ago, tolerance 300 s")
    unsigned = requests.post(listener.url, data=body, headers={"Content-Type": "application/json"}, timeout=10)
    assert unsigned.status_code == 400
    listener.wait_for(r"REFUSED  /: the Paydesk-Signature header is missing")
    assert listener.output.count("  verified, signed") == 1  # none of the three


@pytest.mark.django_db
def test_a_chosen_status_makes_paydesk_retry(merchant, local_endpoint, listen):
    endpoint, port = local_endpoint
    listener = listen("--port", str(port), "--secret", endpoint.secret, "--status", "503")
    event = event_emit(merchant=merchant, type="charge.failed", data={})
    delivery = Delivery.objects.get(event=event)
    assert delivery_attempt(delivery_id=delivery.pk) == "retrying"
    listener.wait_for(rf"charge\.failed  {event.id}  verified.*-> 503")
    delivery.refresh_from_db()
    assert (delivery.last_response_code, delivery.status) == (503, "retrying")


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_merchant_registers_the_listener_and_prints_its_secret(merchant, listen, settings):
    settings.WEBHOOK_ALLOW_PRIVATE_URLS = True
    listener = listen("--port", "0", "--merchant", merchant.name, database=True)
    secret = listener.wait_for(r"Your webhook signing secret is (whsec_\S+)").group(1)
    endpoint = WebhookEndpoint.objects.get(merchant=merchant)
    assert (endpoint.url, endpoint.secret, endpoint.events) == (listener.url, secret, ["*"])
    event = event_emit(merchant=merchant, type="wallet.credited", data={"amount": 500})  # sent once committed
    listener.wait_for(rf"wallet\.credited  {event.id}  verified")
    assert Delivery.objects.get(event=event).status == "delivered"


def test_without_a_secret_it_says_what_to_pass():
    result = manage("webhooks_listen", "--port", "0", env_overrides=PROD_ENV)  # no WEBHOOK_URLS_SECRET either
    assert result.returncode != 0 and "Nothing to verify with: pass --secret" in result.stderr


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_it_verifies_a_delivery_sent_by_a_running_celery_worker(merchant, local_endpoint, listen):
    url = BROKERS["redis"]
    if not broker_reachable(url):
        if os.environ.get("CI") == "true":
            pytest.fail(f"redis is required in CI and is not reachable at {url}")
        pytest.skip(f"redis not reachable at {url}")
    endpoint, port = local_endpoint
    listener = listen("--port", str(port), "--secret", endpoint.secret)
    queue = f"paydesk-listen-{uuid.uuid4().hex[:8]}"
    worker = start_worker(url, queue)
    try:
        with real_broker(url, queue):
            event = event_emit(merchant=merchant, type="installment.paid", data={"installment": "inst_1"})
        listener.wait_for(rf"installment\.paid  {event.id}  verified.*-> 200")
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and Delivery.objects.get(event=event).status != "delivered":
            time.sleep(0.1)
        assert Delivery.objects.get(event=event).status == "delivered"
    finally:
        worker.terminate()
        try:
            worker.wait(timeout=20)
        except subprocess.TimeoutExpired:
            worker.kill()
