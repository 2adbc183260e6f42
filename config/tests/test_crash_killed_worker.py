"""A real gunicorn worker SIGKILLed mid-charge, then the client's retry with the same key:
one charge, one card payment, one event (config/faults.py's PAYDESK_FAULT_KILL)."""

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests
from django.db import connection

from payments.identity.services import api_key_create
from payments.models import Charge
from wallets.selectors import ledger_audit
from wallets.services import wallet_create, wallet_credit
from webhooks.models import OutboundEvent

ROOT = Path(__file__).resolve().parents[2]
pytestmark = [pytest.mark.postgres, pytest.mark.django_db(transaction=True)]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def gunicorn(tmp_path):
    procs = []

    def start(kill_at: str) -> tuple[str, Path]:
        port = free_port()
        once = tmp_path / f"killed-{kill_at}"
        db = connection.settings_dict
        env = {
            k: v for k, v in os.environ.items() if k not in ("REDIS_URL", "CELERY_BROKER_URL", "DJANGO_SETTINGS_MODULE")
        }
        env.update(
            DATABASE_URL=f"postgres://{db['USER']}@{db['HOST'] or '127.0.0.1'}:{db['PORT'] or 5432}/{db['NAME']}",
            PAYDESK_FAULT_KILL=kill_at,
            PAYDESK_FAULT_ONCE=str(once),
            IDEMPOTENCY_IN_FLIGHT_LEASE="1",
            MOCK_PROVIDER_ENABLED="true",
        )
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "gunicorn",
                "config.wsgi",
                "-b",
                f"127.0.0.1:{port}",
                "-w",
                "1",
                "-t",
                "30",
                "--no-control-socket",
            ],
            cwd=ROOT,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )
        procs.append(proc)
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 30
        while True:
            try:
                if requests.get(f"{base}/api/v1/payments/ping", timeout=2).status_code == 200:
                    return base, once
            except requests.RequestException:
                pass
            assert proc.poll() is None and time.monotonic() < deadline, proc.stdout.read().decode()[-3000:]
            time.sleep(0.2)

    yield start
    for proc in procs:
        proc.terminate()
        proc.wait(timeout=10)


@pytest.mark.parametrize("kill_at", ["intent_committed", "provider_called", "before_done"])
def test_a_killed_worker_then_a_retry_charges_once(gunicorn, merchant, customer, kill_at):
    customer.payment_method = "mock_card_ok"
    customer.save(update_fields=["payment_method"])
    wallet = wallet_create(customer=customer, currency="usd")
    wallet_credit(wallet=wallet, amount=1000)
    _, raw = api_key_create(merchant=merchant)
    base, killed = gunicorn(kill_at)
    post = {
        "url": f"{base}/api/v1/charges",
        "json": {"customer": str(customer.pk), "amount": 1500, "currency": "usd"},
        "headers": {"Authorization": f"Bearer {raw}", "Idempotency-Key": "order-77"},
        "timeout": 20,
    }
    with pytest.raises(requests.ConnectionError):
        requests.post(**post)  # the worker dies mid-request: no answer at all
    assert killed.exists()

    time.sleep(1.2)  # the client's back-off; the key's 1 s lease passes meanwhile
    deadline = time.monotonic() + 30
    while True:  # gunicorn starts a new worker in the dead one's place
        try:
            retry = requests.post(**post)
            break
        except requests.ConnectionError:
            assert time.monotonic() < deadline
            time.sleep(0.2)
    assert retry.status_code == 201, retry.text
    charge = Charge.objects.get()
    assert retry.json()["id"] == str(charge.pk)
    assert (charge.status, charge.wallet_amount, charge.external_amount) == ("succeeded", 1000, 500)
    wallet.refresh_from_db()
    assert (wallet.balance, wallet.held) == (0, 0)
    assert OutboundEvent.objects.filter(type="charge.succeeded").count() == 1
    again = requests.post(**post)
    assert again.headers["Idempotent-Replayed"] == "true" and again.content == retry.content
    report = ledger_audit()
    assert report["ok"], report["violations"]
