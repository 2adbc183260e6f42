"""Project-wide pytest setup: PostgreSQL-only tests, shared fixtures."""

import contextlib
import os
import time

import jwt
import pytest
from django.conf import settings
from django.core.cache import cache
from rest_framework.test import APIClient

_skipped_postgres: list[str] = []


def _on_postgres() -> bool:
    return settings.DATABASES["default"]["ENGINE"].endswith(("postgresql", "postgis"))


def pytest_collection_modifyitems(config, items):
    if _on_postgres():
        return
    skip = pytest.mark.skip(reason="needs PostgreSQL (set DATABASE_URL)")
    for item in items:
        if "postgres" in item.keywords:
            item.add_marker(skip)
            _skipped_postgres.append(item.nodeid)


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    if _skipped_postgres:
        terminalreporter.write_line(
            f"PostgreSQL-only tests skipped: {len(_skipped_postgres)} (running on SQLite; set DATABASE_URL "
            "or start PostgreSQL on 127.0.0.1:5432 to run them)."
        )
    else:
        terminalreporter.write_line("PostgreSQL-only tests skipped: 0")


def pytest_sessionfinish(session, exitstatus):
    # In CI, PostgreSQL is required: a skipped PostgreSQL test fails the run.
    if os.environ.get("CI") == "true" and _skipped_postgres:
        session.exitstatus = 1


@pytest.fixture(params=[1, 8], ids=["1 shard", "8 shards"])
def shards(request, settings):
    """Run the test with the merchant balances in one account and sharded in eight
    (wallets.ledger); read a merchant's balance with wallets.services.merchant_balance."""
    settings.MERCHANT_BALANCE_SHARDS = request.param
    return request.param


@pytest.fixture(autouse=True)
def _fast_and_isolated(settings):
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
    settings.CELERY_TASK_ALWAYS_EAGER = True
    # One merchant-balance account per merchant and currency, as the tests that read "the
    # merchant's balance" row expect; the sharded ledger (8) runs in the modules that ask
    # for it with the `sharded` fixture below, the races and the audit among them.
    settings.MERCHANT_BALANCE_SHARDS = 1
    cache.clear()
    from payments.identity.key_cache import api_key_cache

    api_key_cache.clear()  # keys a previous test remembered point at rows its rollback removed
    from credits.accounts import _known_clear

    _known_clear()  # so do the credit accounts a previous test's debits remembered
    yield
    with contextlib.suppress(Exception):  # a test may have pointed the cache at a dead server
        cache.clear()


@pytest.fixture
def api():
    return APIClient()


@pytest.fixture
def merchant(db):
    from payments.tests.factories import MerchantFactory

    return MerchantFactory()


@pytest.fixture
def merchant_key(merchant):
    from payments.identity.services import api_key_create

    _, raw = api_key_create(merchant=merchant)
    return raw


@pytest.fixture
def client_for():
    """client_for(merchant) -> an APIClient authenticated with a fresh key of that merchant."""
    from payments.identity.services import api_key_create

    def make(merchant):
        _, raw = api_key_create(merchant=merchant)
        client = APIClient()
        client.credentials(HTTP_AUTHORIZATION=f"Bearer {raw}")
        return client

    return make


@pytest.fixture
def merchant_api(merchant_key):
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {merchant_key}")
    return client


@pytest.fixture
def customer(merchant):
    from payments.tests.factories import CustomerFactory

    return CustomerFactory(merchant=merchant)


@pytest.fixture
def make_jwt():
    def make(sub, *, exp_in: int = 300, secret: str | None = None, algorithm: str = "HS256", **claims):
        payload = {"sub": str(sub), **claims}
        if exp_in is not None:
            payload["exp"] = int(time.time()) + exp_in
        return jwt.encode(payload, secret or settings.JWT_SECRET, algorithm=algorithm)

    return make


@pytest.fixture
def operators(db, django_user_model):
    """Staff clients for the admin's operator actions, in the groups `manage.py seed`
    makes: .admin (superuser), .finance and .support (config/tests/operator_actions_support.py)."""
    from config.tests.operator_actions_support import make_operators

    return make_operators(django_user_model)
