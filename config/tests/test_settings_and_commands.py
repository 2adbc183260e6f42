import io
import os
import subprocess
import sys
from pathlib import Path

import pytest
from django.core.management import call_command

from config.logging import redact
from config.settings import _origins

ROOT = Path(__file__).resolve().parents[2]
PROD_ENV = {
    "DEBUG": "0",
    "SECRET_KEY": "x7!k2q9Lp0zR4vT8mN3bW6yC1sD5fG7hJ9kL2zX4cV6bN8mQ0wE3rT5yU7iO9p",
    "JWT_SECRET": "prod-jwt-secret-0123456789abcdef0123456789",
    "ALLOWED_HOSTS": "paydesk.example.com",
    "DATABASE_URL": "sqlite:////tmp/paydesk-deploy-check.sqlite3",
    "STRIPE_WEBHOOK_SECRET": "whsec_test_0123456789",
}


def manage(*args, env_overrides=None, drop=()):
    env = {k: v for k, v in os.environ.items() if k not in drop and not k.startswith(("DJANGO_", "CELERY_"))}
    for key in ("DEBUG", "SECRET_KEY", "JWT_SECRET", "DATABASE_URL", "REDIS_URL", "ALLOWED_HOSTS"):
        env.pop(key, None)
    env.update(env_overrides or {})
    return subprocess.run(
        [sys.executable, "manage.py", *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120
    )


def test_check_deploy_passes_with_a_production_environment():
    result = manage("check", "--deploy", "--fail-level", "WARNING", env_overrides=PROD_ENV)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "no issues" in result.stdout


@pytest.mark.parametrize("missing", ["SECRET_KEY", "JWT_SECRET"])
def test_production_without_a_secret_refuses_to_start_naming_it(missing):
    env = {k: v for k, v in PROD_ENV.items() if k != missing}
    result = manage("check", env_overrides=env)
    assert result.returncode != 0
    assert missing in result.stderr


def test_cors_origins_accept_csv_and_json():
    assert _origins("https://a.example, https://b.example") == ["https://a.example", "https://b.example"]
    assert _origins('["https://a.example"]') == ["https://a.example"]
    assert _origins("") == []


@pytest.mark.django_db
def test_migrations_are_in_sync_with_models():
    call_command("makemigrations", "--check", "--dry-run", verbosity=0)


@pytest.mark.django_db
def test_periodic_tasks_exist_after_migrate():
    from django_celery_beat.models import PeriodicTask

    names = set(PeriodicTask.objects.values_list("task", flat=True))
    assert {"config.tasks.idempotency_keys_purge_task", "payments.tasks.subscriptions_renew_task"} <= names


def test_logs_never_carry_secrets():
    line = (
        "key=pd_test_abcdefghijklmnopqrstuvwxyz12 auth=Bearer eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0.sig "
        "stripe=sk_test_51Habcdefghijklmnop whsec=whsec_abcdefghijkl card=4242 4242 4242 4242 sig=v1=" + "a" * 64
    )
    cleaned = redact(line)
    assert redact("runtime 0.0036055430000485783 s, order 12345678901234") == (
        "runtime 0.0036055430000485783 s, order 12345678901234"
    )  # numbers that are not card numbers stay
    for secret in (
        "abcdefghijklmnopqrstuvwxyz12",
        "eyJzdWIiOiIxIn0",
        "51Habcdefghijklmnop",
        "whsec_abcdefghijkl",
        "4242 4242 4242 4242",
        "a" * 64,
    ):
        assert secret not in cleaned


def test_endpoint_secrets_are_redacted_whole():
    """Endpoint secrets are "whsec_" + token_urlsafe: "-" and "_" anywhere, even first."""
    for secret in ("whsec_Ab-cD_ef-GH-ij_KL-mnOPqrST-uv", "whsec_-leading-dash-0123456789", "whsec_a_b-c_d-e_f"):
        cleaned = redact(f"endpoint secret={secret}; next")
        assert cleaned == "endpoint secret=whsec_[REDACTED]; next", cleaned


def test_log_records_are_redacted_json(caplog):
    import json
    import logging

    from config.logging import JsonFormatter, RedactSecretsFilter, RequestIdFilter

    record = logging.LogRecord("t", logging.INFO, __file__, 1, "using %s", ("pd_live_supersecretvalue123",), None)
    RedactSecretsFilter().filter(record)
    RequestIdFilter().filter(record)
    out = json.loads(JsonFormatter().format(record))
    assert "supersecretvalue123" not in out["message"] and out["message"].startswith("using pd_live_")
    assert "request_id" in out


@pytest.mark.django_db
def test_seed_is_idempotent(django_user_model, settings):
    settings.DEBUG = True  # the demo staff user exists only in DEBUG
    from django_celery_beat.models import PeriodicTask

    from payments.identity.models import ApiKey, Category, Customer, Merchant, Region, Subscription

    models = [Region, Category, Merchant, ApiKey, Customer, Subscription, PeriodicTask, django_user_model]
    first = io.StringIO()
    call_command("seed", stdout=first)
    counts = {m.__name__: m.objects.count() for m in models}
    assert counts["Merchant"] == 1 and counts["Customer"] == 5 and counts["ApiKey"] == 1
    second = io.StringIO()
    call_command("seed", stdout=second)
    assert {m.__name__: m.objects.count() for m in models} == counts
    key_line = [line for line in first.getvalue().splitlines() if line.startswith("Demo API key")][0]
    assert key_line in second.getvalue()
    assert "admin / admin" in second.getvalue()
    assert django_user_model.objects.get(username="admin").is_staff


@pytest.mark.django_db
def test_seed_makes_no_demo_staff_without_debug(django_user_model, settings):
    settings.DEBUG = False
    call_command("seed", stdout=io.StringIO())
    assert not django_user_model.objects.filter(username="admin").exists()


@pytest.mark.django_db
def test_seed_without_debug_makes_reference_data_and_tasks_but_no_demo_merchant_or_key(settings):
    from django_celery_beat.models import PeriodicTask

    from payments.identity.models import ApiKey, Customer, Merchant, Region

    settings.DEBUG = False
    out = io.StringIO()
    call_command("seed", stdout=out)
    assert Region.objects.exists() and PeriodicTask.objects.exists()
    assert not Merchant.objects.exists() and not ApiKey.objects.exists() and not Customer.objects.exists()
    assert "pd_test_" not in out.getvalue() and "--demo" in out.getvalue()


@pytest.mark.django_db
def test_seed_demo_flag_creates_demo_data_without_debug(settings):
    from payments.identity.models import Merchant

    settings.DEBUG = False
    out = io.StringIO()
    call_command("seed", "--demo", stdout=out)
    assert Merchant.objects.filter(name="Demo Shop").exists()
    assert "Demo API key: pd_test_" in out.getvalue()


@pytest.mark.django_db
def test_seed_demo_key_works(api, settings):
    settings.DEBUG = True
    out = io.StringIO()
    call_command("seed", "--customers", "12", stdout=out)
    raw = [line for line in out.getvalue().splitlines() if line.startswith("Demo API key")][0].split(": ")[1]
    api.credentials(HTTP_AUTHORIZATION=f"Bearer {raw}")
    assert api.get("/api/v1/customers").json()["count"] == 12


@pytest.mark.django_db
def test_create_api_key_prints_the_key_last_and_creates_the_merchant(api):
    from payments.identity.models import Merchant

    out, err = io.StringIO(), io.StringIO()
    call_command("create_api_key", "--merchant", "Acme", stdout=out, stderr=err)
    raw = out.getvalue().strip().splitlines()[-1]
    assert raw.startswith("pd_test_")
    merchant = Merchant.objects.get(name="Acme")
    assert merchant.subscription.quota == 10_000
    api.credentials(HTTP_AUTHORIZATION=f"Bearer {raw}")
    assert api.get("/api/v1/customers").status_code == 200
    out = io.StringIO()
    call_command("create_api_key", "--merchant", "Acme", "--live", stdout=out, stderr=io.StringIO())
    assert out.getvalue().strip().splitlines()[-1].startswith("pd_live_")
    assert Merchant.objects.filter(name="Acme").count() == 1
