import threading
from collections import Counter

import pytest
from django.db import connection
from rest_framework.test import APIClient

from wallets.selectors import ledger_audit, ledger_audit_format


@pytest.fixture(autouse=True)
def _ledger_audited_after_each_test(request):
    """Every credits test that touches the database ends with a full ledger audit that
    must pass: balances equal their entries, every unit sums to zero, nothing negative."""
    if request.node.get_closest_marker("django_db") is None:
        yield
        return
    request.getfixturevalue("db")
    yield
    report = ledger_audit()
    assert report["ok"], ledger_audit_format(report)


@pytest.fixture
def stripe_secret(settings):
    settings.STRIPE_WEBHOOK_SECRET = "whsec_test_credits"
    return settings.STRIPE_WEBHOOK_SECRET


@pytest.fixture
def jwt_client(make_jwt):
    """jwt_client(customer) -> an APIClient carrying that customer's end-user token."""

    def make(customer, **kwargs):
        client = APIClient()
        client.credentials(HTTP_AUTHORIZATION=f"Bearer {make_jwt(customer.pk, **kwargs)}")
        return client

    return make


def run_concurrently(n: int, work) -> Counter:
    """Start `n` threads that call work(i) together (a barrier), each on its own
    connection; count results by outcome ("ok", a returned string, or an exception name)."""
    barrier = threading.Barrier(n)
    outcomes: Counter = Counter()
    lock = threading.Lock()

    def target(i):
        try:
            barrier.wait(timeout=30)
            result = work(i)
            outcome = "ok" if result is None else result
        except Exception as exc:  # counted, and asserted on by the test
            outcome = f"{type(exc).__name__}: {exc}"[:200]
        finally:
            connection.close()
        with lock:
            outcomes[outcome] += 1

    threads = [threading.Thread(target=target, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not any(t.is_alive() for t in threads), "a thread is stuck (deadlock?)"
    return outcomes
