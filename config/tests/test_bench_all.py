"""`manage.py bench all` runs to the end in the production configuration (DEBUG off, no
dev secrets), every scenario setting up what it needs, on a database of its own."""

import json
import os
import subprocess
import sys
import uuid
from pathlib import Path

import psycopg
import pytest
from django.db import connection

from config.bench import scenarios

ROOT = Path(__file__).resolve().parents[2]
pytestmark = [pytest.mark.postgres, pytest.mark.django_db]


@pytest.fixture
def scratch_database():
    """A database of its own: bench leaves its data behind, and is no test database."""
    db = connection.settings_dict
    name = f"paydesk_bench_{uuid.uuid4().hex[:8]}"
    admin = psycopg.connect(
        dbname="postgres", user=db["USER"], host=db["HOST"] or "127.0.0.1", port=db["PORT"] or 5432, autocommit=True
    )
    with admin.cursor() as cursor:
        cursor.execute(f'CREATE DATABASE "{name}"')
    try:
        yield f"postgres://{db['USER']}@{db['HOST'] or '127.0.0.1'}:{db['PORT'] or 5432}/{name}"
    finally:
        with admin.cursor() as cursor:
            cursor.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.close()


def test_bench_all_runs_to_the_end_with_debug_off(scratch_database):
    from django.utils.module_loading import autodiscover_modules

    autodiscover_modules("bench")
    expected = {s.name for s in scenarios()}
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("DJANGO_SETTINGS_MODULE", "MOCK_WEBHOOK_SECRET", "MOCK_PROVIDER_ENABLED", "STRIPE_WEBHOOK_SECRET")
    }
    env.update(
        DATABASE_URL=scratch_database,
        DEBUG="false",
        SECRET_KEY="bench-test-secret-key-0123456789abcdefghijklmnopqrstuvwxyz",
        JWT_SECRET="bench-test-jwt-secret-0123456789abcdefghijklmn",
        ALLOWED_HOSTS="127.0.0.1,localhost",
        BENCH_LARGE_LEDGER="20000",  # the 1M-entry wallet is for real runs, not a smoke test
    )
    manage = [sys.executable, "manage.py"]
    subprocess.run([*manage, "migrate", "-v0"], cwd=ROOT, env=env, check=True, timeout=900)
    run = subprocess.run(
        [*manage, "bench", "all", "--n", "5"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=1200
    )
    assert run.returncode == 0, run.stderr[-3000:]
    results = [json.loads(line) for line in run.stdout.splitlines() if line.startswith("{")]
    printed = [r["scenario"] for r in results]
    missing = sorted(name for name in expected if not any(p.startswith(name) for p in printed))
    assert not missing, f"no figures from {missing}; printed {printed}"
    assert all(r["debug"] is False for r in results)
