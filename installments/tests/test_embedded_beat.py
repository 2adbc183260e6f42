"""The embedded default collects due installments on schedule with no broker server:
`manage.py embedded_worker` (what `make run` starts when no broker is configured) runs a
Celery worker with beat on kombu's filesystem transport, and beat's database schedule
sends the collection task to it. Real processes, on PostgreSQL (the test's database) and
on a SQLite file (the embedded default's database)."""

import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
from django.db import connection

from installments.models import Installment
from installments.tests.embedded import SQLITE_SETUP, due_installment_create

ROOT = Path(__file__).resolve().parents[2]
DEADLINE_SECONDS = 45  # worker start-up (a few seconds, more on a busy machine) + a 1-second schedule


def _env(*, database_url: str, broker_dir: Path) -> dict:
    return {
        **os.environ,
        "DATABASE_URL": database_url,
        # No broker configured, whatever the caller's environment or .env says.
        "REDIS_URL": "",
        "CELERY_BROKER_URL": "",
        "CELERY_FILESYSTEM_BROKER_DIR": str(broker_dir),
    }


def _start_embedded_worker(env: dict) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "manage.py", "embedded_worker", "--concurrency=1", "--loglevel=info"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,  # its beat and pool processes can be stopped as one group
    )


def _stop(worker: subprocess.Popen) -> str:
    if worker.poll() is None:
        os.killpg(worker.pid, signal.SIGTERM)  # warm shutdown: the worker stops its beat and pool
        try:
            worker.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(worker.pid, signal.SIGKILL)
            worker.wait()
    return worker.stdout.read().decode(errors="replace")[-4000:]


def _wait_until_paid(worker: subprocess.Popen, status_of) -> str:
    deadline = time.monotonic() + DEADLINE_SECONDS
    status = status_of()
    while status != Installment.Status.PAID and time.monotonic() < deadline:
        assert worker.poll() is None, f"the worker exited ({worker.returncode})"
        time.sleep(0.5)
        status = status_of()
    return status


def _collected_by_the_worker(env: dict, status_of) -> None:
    assert status_of() == Installment.Status.SCHEDULED  # due, and nothing has collected it yet
    worker = _start_embedded_worker(env)
    status, output = None, ""
    try:
        status = _wait_until_paid(worker, status_of)
    finally:
        output = _stop(worker)
    assert status == Installment.Status.PAID, f"still {status} after {DEADLINE_SECONDS} s; worker output:\n{output}"
    assert "Sending due task Collect due installments" in output  # beat sent it, on its schedule
    assert "filesystem://" in output  # ... through the filesystem broker, to the worker


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_a_due_installment_is_collected_on_postgresql(tmp_path):
    installment_id = due_installment_create()
    db = connection.settings_dict
    url = f"postgres://{db['USER']}@{db['HOST'] or '127.0.0.1'}:{db['PORT'] or 5432}/{db['NAME']}"
    env = _env(database_url=url, broker_dir=tmp_path / "broker")
    _collected_by_the_worker(env, lambda: Installment.objects.get(pk=installment_id).status)


def test_a_due_installment_is_collected_on_sqlite(tmp_path):
    database = tmp_path / "embedded.sqlite3"
    env = _env(database_url=f"sqlite:///{database}", broker_dir=tmp_path / "broker")
    setup = subprocess.run(
        [sys.executable, "-c", SQLITE_SETUP], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300
    )
    assert setup.returncode == 0, setup.stderr[-3000:]
    installment_id = setup.stdout.strip().splitlines()[-1]

    def status_of():
        with sqlite3.connect(database, timeout=20) as db:
            (status,) = db.execute(
                "SELECT status FROM installments_installment WHERE id = ?", [installment_id.replace("-", "")]
            ).fetchone()
        return status

    _collected_by_the_worker(env, status_of)
