"""Helpers for tests that send signed events (real-shaped Stripe bodies, signatures) and
for tests with real processes (a Celery worker on a real broker)."""

import contextlib
import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import urlsplit

from django.db import connection

from config.celery import app
from webhooks.signing import sign

EVENTS_DIR = Path(__file__).parent / "stripe_events"


def stripe_event(name: str, *, event_id: str | None = None, replace: dict | None = None, **object_fields) -> dict:
    """A recorded Stripe event (webhooks/tests/stripe_events/<name>.json), with a new id,
    placeholder strings replaced and fields of data.object overridden."""
    text = (EVENTS_DIR / f"{name}.json").read_text()
    for old, new in (replace or {}).items():
        text = text.replace(old, str(new))
    event = json.loads(text)
    if event_id:
        event["id"] = event_id
    event["data"]["object"].update(object_fields)
    return event


def signed_post(
    client,
    url: str,
    body: dict | str | bytes,
    *,
    secret: str,
    header: str = "Stripe-Signature",
    timestamp: int | None = None,
    **extra,
):
    raw = body if isinstance(body, (str, bytes)) else json.dumps(body)
    raw = raw.decode() if isinstance(raw, bytes) else raw
    signature = sign(raw, secret, timestamp=timestamp if timestamp is not None else int(time.time()))
    meta_header = "HTTP_" + header.upper().replace("-", "_")
    return client.generic("POST", url, raw, content_type="application/json", **{meta_header: signature}, **extra)


ROOT = Path(__file__).resolve().parents[2]
BROKERS = {
    "redis": os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/15"),
    "rabbitmq": os.environ.get("TEST_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672//"),
}


def broker_reachable(url: str) -> bool:
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
