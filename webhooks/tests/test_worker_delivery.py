"""Delivery through a real Celery worker process, with Redis and with RabbitMQ."""

import contextlib
import os
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from django.db import connection

from config.celery import app
from webhooks.models import Delivery
from webhooks.services import endpoint_create, event_emit

ROOT = Path(__file__).resolve().parents[2]
BROKERS = {
    "redis": os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/15"),
    "rabbitmq": os.environ.get("TEST_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672//"),
}


def _reachable(url: str) -> bool:
    parts = urlsplit(url)
    try:
        socket.create_connection((parts.hostname, parts.port or (6379 if parts.scheme == "redis" else 5672)), 1).close()
        return True
    except OSError:
        return False


@contextlib.contextmanager
def real_broker(url: str, queue: str):
    """Point this process's Celery app at a real broker (not eager) for the block."""
    saved = (app.conf.broker_url, app.conf.task_always_eager, app.conf.task_default_queue)
    app.conf.broker_url, app.conf.task_always_eager, app.conf.task_default_queue = url, False, queue
    _reset_pools()
    try:
        yield
    finally:
        _reset_pools()
        app.conf.broker_url, app.conf.task_always_eager, app.conf.task_default_queue = saved


def _reset_pools():
    # Celery caches its connection and producer pools per app; forget them (as Celery
    # itself does after a fork) so the next send connects to the broker just configured.
    app._pool = None
    app.amqp._producer_pool = None


def start_worker(broker_url: str, queue: str) -> subprocess.Popen:
    db = connection.settings_dict
    env = {
        **os.environ,
        "DATABASE_URL": f"postgres://{db['USER']}@{db['HOST'] or '127.0.0.1'}:{db['PORT'] or 5432}/{db['NAME']}",
        "CELERY_BROKER_URL": broker_url,
        "CELERY_TASK_ALWAYS_EAGER": "0",
        "WEBHOOK_ALLOW_PRIVATE_URLS": "1",
    }
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "celery",
            "-A",
            "config",
            "worker",
            "--pool=solo",
            "-Q",
            queue,
            "-l",
            "warning",
            "--without-heartbeat",
            "--without-gossip",
            "--without-mingle",
        ],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("broker", ["redis", "rabbitmq"])
def test_event_is_delivered_by_a_real_worker(broker, merchant, receiver, allow_loopback):
    url = BROKERS[broker]
    if not _reachable(url):
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
