"""Delivery through a real Celery worker process, with Redis and with RabbitMQ."""

import os
import subprocess
import time
import uuid

import pytest

from webhooks.models import Delivery
from webhooks.services import endpoint_create, event_emit
from webhooks.tests.support import BROKERS, broker_reachable, real_broker, start_worker


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("broker", ["redis", "rabbitmq"])
def test_event_is_delivered_by_a_real_worker(broker, merchant, receiver, allow_loopback):
    url = BROKERS[broker]
    if not broker_reachable(url):
        if os.environ.get("CI") == "true":
            pytest.fail(f"{broker} is required in CI and is not reachable at {url}")
        pytest.skip(f"{broker} not reachable at {url}")
    endpoint_create(merchant=merchant, url=receiver.url, events=["*"])
    queue = f"paydesk-test-{uuid.uuid4().hex[:8]}"
    worker = start_worker(url, queue)
    try:
        with real_broker(url, queue):
            event = event_emit(merchant=merchant, type="payment.succeeded", data={"broker": broker})
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not receiver.requests:
            assert worker.poll() is None, worker.stdout.read().decode()[-3000:]
            time.sleep(0.2)
        assert [b["id"] for b in receiver.bodies()] == [str(event.id)]
        # The receiver has answered; the worker records the outcome just after.
        while time.monotonic() < deadline and Delivery.objects.get(event=event).status != "delivered":
            time.sleep(0.1)
        delivery = Delivery.objects.get(event=event)
        assert delivery.status == "delivered" and delivery.attempts == 1
    finally:
        worker.terminate()
        try:
            worker.wait(timeout=20)
        except subprocess.TimeoutExpired:
            worker.kill()
