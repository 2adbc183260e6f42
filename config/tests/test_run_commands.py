"""What `make run` asks and says (manage.py runinfo), and the embedded worker's guard."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


DROP = ("REDIS_URL", "CELERY_BROKER_URL", "CELERY_TASK_ALWAYS_EAGER", "STRIPE_SECRET_KEY", "DEFAULT_PAYMENT_PROVIDER")


def manage(*args, **env_overrides):
    env = {k: v for k, v in os.environ.items() if k not in DROP}
    env.update(env_overrides)
    return subprocess.run(
        [sys.executable, "manage.py", *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120
    )


@pytest.mark.parametrize(
    ("env", "mode"),
    [
        ({}, "embedded"),
        ({"REDIS_URL": "redis://127.0.0.1:1/0"}, "broker"),
        ({"CELERY_BROKER_URL": "amqp://guest:guest@127.0.0.1:1//"}, "broker"),
        ({"CELERY_TASK_ALWAYS_EAGER": "1"}, "eager"),
        ({"CELERY_BROKER_URL": "amqp://guest:guest@127.0.0.1:1//", "CELERY_TASK_ALWAYS_EAGER": "1"}, "eager"),
    ],
)
def test_runinfo_says_how_make_run_runs_background_work(env, mode):
    result = manage("runinfo", **env)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == mode  # alone on stdout: the Makefile reads it


def test_runinfo_says_the_mock_is_the_default_and_what_a_stripe_key_would_do():
    notes = manage("runinfo").stderr
    assert "Default payment provider: mock" in notes
    assert "Setting STRIPE_SECRET_KEY makes Stripe the default" in notes


def test_runinfo_says_loudly_that_a_stripe_key_made_stripe_the_default():
    notes = manage("runinfo", STRIPE_SECRET_KEY="sk_test_123").stderr
    assert "STRIPE_SECRET_KEY is set, so Stripe (test mode) is the default payment provider" in notes
    assert "DEFAULT_PAYMENT_PROVIDER=mock keeps the mock" in notes
    chosen = manage("runinfo", STRIPE_SECRET_KEY="sk_test_123", DEFAULT_PAYMENT_PROVIDER="mock").stderr
    assert "Default payment provider: mock (DEFAULT_PAYMENT_PROVIDER)" in chosen


def test_the_embedded_worker_refuses_to_run_beside_a_real_broker():
    """The web server would send its tasks to that broker, never to this worker."""
    result = manage("embedded_worker", REDIS_URL="redis://127.0.0.1:1/0")
    assert result.returncode != 0
    assert "make worker" in result.stderr and "redis" in result.stderr
