import os
import threading
from collections import Counter

import pytest
from django.db import connection
from rest_framework.test import APIClient

from wallets.selectors import ledger_audit, ledger_audit_format


@pytest.fixture(autouse=True)
def _ledger_audited_after_each_test(request):
    """Every auctions test that touches the database ends with a full ledger audit that
    must pass: balances equal their entries, held equals the pending holds, nothing
    negative, every currency sums to zero."""
    if request.node.get_closest_marker("django_db") is None:
        yield
        return
    request.getfixturevalue("db")
    yield
    report = ledger_audit()
    assert report["ok"], ledger_audit_format(report)


@pytest.fixture
def jwt_client(make_jwt):
    """jwt_client(customer) -> an APIClient carrying that customer's end-user token."""

    def make(customer, **kwargs):
        client = APIClient()
        client.credentials(HTTP_AUTHORIZATION=f"Bearer {make_jwt(customer.pk, **kwargs)}")
        return client

    return make


# PostgreSQL's max_connections is shared (100 by default, and other test runs use it too):
# the threads all start together at a barrier, but at most this many hold a connection at
# once; each closes its connection as it finishes, so the rest follow at once.
MAX_CONNECTIONS = int(os.environ.get("AUCTIONS_RACE_CONNECTIONS", "24"))


def run_concurrently(n: int, work, *, connections: int = MAX_CONNECTIONS) -> Counter:
    """Start `n` threads that call work(i) together, each on its own connection; count
    outcomes ("ok", a returned string, or the exception's class name). Unexpected
    exceptions (not a DomainError) are kept in `.errors` for the assertion message."""
    from config.errors import DomainError

    barrier = threading.Barrier(n)
    slots = threading.BoundedSemaphore(connections)
    outcomes: Counter = Counter()
    errors: list[str] = []
    lock = threading.Lock()

    def target(i):
        try:
            barrier.wait(timeout=60)
            with slots:
                try:
                    result = work(i)
                finally:
                    connection.close()
            outcome = "ok" if result is None else result
        except Exception as exc:  # counted, and asserted on by the test
            outcome = type(exc).__name__
            if not isinstance(exc, DomainError):
                errors.append(f"{outcome}: {exc}")
        with lock:
            outcomes[outcome] += 1

    threads = [threading.Thread(target=target, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=180)
    assert not any(t.is_alive() for t in threads), "a thread is stuck (deadlock?)"
    outcomes.errors = errors
    return outcomes
