"""The money path at the database's speed: every SQL statement one wallet debit costs,
end to end through the HTTP stack (authentication, throttling, idempotency, the view, the
ledger), counted on a warm process as production runs it: outside any test transaction
(transaction=True), after a first request has filled the process's caches.

The budget is 6 statements:
- the request's own: the Idempotency-Key claim (1, committing on its own), the wallet
  read (1), the key's completion (1). The API key comes from this process's key cache and
  the throttle counts in the cache: no statement for either.
- the ledger's (wallets.ledger): one lock of the two accounts, one write of the
  transfer, its entries and the balances with the ledger's idempotency-key check inside
  it, and one insert of the outbox event with its deliveries (webhooks.events_emit).
Django logs the BEGIN and COMMIT of a transaction among the queries; those two, of the
one transaction that holds the effect and the completion, are not counted in the 6 (a
second transaction is refused outright). A SAVEPOINT / RELEASE is counted: nesting
costs two round trips the budget has no room for.
"""

import uuid

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

pytestmark = [pytest.mark.postgres, pytest.mark.django_db(transaction=True)]

BUDGET = 6
REQUEST_OWN = 3  # claim, wallet read, completion


@pytest.fixture
def funded_wallet(customer):
    from wallets.tests.factories import WalletFactory

    return WalletFactory(customer=customer, balance=100_000)


def _debit(api, customer, key: str):
    return api.post(
        f"/api/v1/wallets/{customer.pk}/debit",
        {"amount": 100, "currency": "usd", "reference": "order-1"},
        format="json",
        headers={"Idempotency-Key": key},
    )


def _counted_debit(api, customer) -> tuple[object, list[str], str]:
    warm = _debit(api, customer, f"warm-{uuid.uuid4()}")  # fills the API key cache, records the key's use
    assert warm.status_code == 200, warm.content
    with CaptureQueriesContext(connection) as ctx:
        response = _debit(api, customer, f"counted-{uuid.uuid4()}")
    logged = [q["sql"] for q in ctx.captured_queries]
    listing = "\n".join(f"{n}. {sql}" for n, sql in enumerate(logged, 1))
    assert logged.count("BEGIN") <= 1, f"more than one transaction:\n{listing}"
    return response, [sql for sql in logged if sql not in ("BEGIN", "COMMIT")], listing


def test_a_keyed_wallet_debit_costs_at_most_six_statements(merchant_api, customer, funded_wallet):
    response, statements, listing = _counted_debit(merchant_api, customer)
    assert response.status_code == 200, response.content
    assert response.json()["balance"] == 100_000 - 200
    assert len(statements) <= BUDGET, f"{len(statements)} statements (budget {BUDGET}):\n{listing}"


def test_the_requests_own_part_is_three_statements(merchant_api, customer, funded_wallet, monkeypatch):
    """The same request with the ledger call taken out: what is left is the request's own
    share of the budget, whatever the ledger costs."""
    from wallets.api import views

    monkeypatch.setattr(views, "wallet_debit", lambda **kwargs: None)
    response, statements, listing = _counted_debit(merchant_api, customer)
    assert response.status_code == 200, response.content
    assert len(statements) <= REQUEST_OWN, f"{len(statements)} statements (budget {REQUEST_OWN}):\n{listing}"
