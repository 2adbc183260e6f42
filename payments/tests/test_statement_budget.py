"""Statement budgets of the payments hot paths, counted on a warm process outside any test
transaction (transaction=True), as production runs them: the figures `manage.py bench`
reports per operation. Django logs each transaction's BEGIN and COMMIT among the
queries; they are not counted. A SAVEPOINT / RELEASE is.

- payment create (POST /api/v1/payments, mock provider): 6. The quota token, the
  payment, its timeline event; the mock provider's checkout; the provider's answer and
  its timeline event.
- provider webhook (POST /api/v1/payments/webhook settling a pending payment): 10. The
  event stored (one statement, committing on its own); then, processing it: the event
  locked, the payment read with its merchant and charge, its accounts, the payment
  locked, the accounts locked, the ledger write, the payment updated with its timeline
  event (one statement), the outbox, the event marked processed (no savepoint around
  the handler).
- wallet charge with a 3-way split (charges service): 7. The wallet read with the
  merchant's accounts; the lock; the ledger write; the payment, the charge, their
  timeline events; the outbox.
"""

import json
import uuid

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from payments.charges import charge_create
from payments.services import payment_create
from wallets.services import wallet_create, wallet_credit
from webhooks.signing import sign

pytestmark = [pytest.mark.postgres, pytest.mark.django_db(transaction=True)]

SPLITS = [
    {"destination": "seller", "bps": 7000},
    {"destination": "platform", "bps": 1000},
    {"destination": "courier", "amount": 25},
]


def _counted(work) -> tuple[object, list[str]]:
    with CaptureQueriesContext(connection) as ctx:
        result = work()
    statements = [q["sql"] for q in ctx.captured_queries if q["sql"] not in ("BEGIN", "COMMIT")]
    return result, statements


def _listing(statements: list[str]) -> str:
    return "\n".join(f"{n}. {sql[:300]}" for n, sql in enumerate(statements, 1))


def _create(api, order_id: str):
    body = {"order_id": order_id, "amount": 1999, "currency": "usd", "provider": "mock"}
    return api.post("/api/v1/payments", body, format="json")


def test_a_payment_create_costs_at_most_six_statements(merchant_api, settings):
    settings.MOCK_PROVIDER_ENABLED = True
    assert _create(merchant_api, "warm").status_code == 201  # fills the key cache, records the key's use
    response, statements = _counted(lambda: _create(merchant_api, f"o-{uuid.uuid4()}"))
    assert response.status_code == 201, response.content
    assert len(statements) <= 6, f"{len(statements)} statements:\n{_listing(statements)}"


def test_a_provider_webhook_costs_at_most_ten_statements(api, merchant, settings):
    settings.MOCK_PROVIDER_ENABLED = True
    settings.MOCK_WEBHOOK_SECRET = "mock_whsec_budget"

    def notify(payment):
        raw = json.dumps(
            {
                "provider": "mock",
                "provider_payment_id": payment.provider_payment_id,
                "status": "paid",
                "amount": payment.amount,
                "currency": payment.currency,
            }
        )
        return api.post(
            "/api/v1/payments/webhook",
            raw,
            content_type="application/json",
            headers={"X-Paydesk-Signature": sign(raw, settings.MOCK_WEBHOOK_SECRET)},
        )

    warm, counted = (
        payment_create(merchant=merchant, order_id=f"o-{i}", amount=500, currency="usd", provider="mock")
        for i in range(2)
    )
    assert notify(warm).status_code == 200
    response, statements = _counted(lambda: notify(counted))
    assert response.status_code == 200, response.content
    counted.refresh_from_db()
    assert counted.status == "succeeded"
    assert len(statements) <= 10, f"{len(statements)} statements:\n{_listing(statements)}"


def test_a_wallet_charge_with_splits_costs_at_most_seven_statements(merchant, customer):
    wallet_credit(wallet=wallet_create(customer=customer, currency="usd"), amount=10_000)

    def charge():
        return charge_create(
            merchant=merchant, customer=customer, amount=1000, currency="usd", split_instructions=SPLITS
        )

    assert charge().status == "succeeded"  # the recipients' accounts are opened by the first
    result, statements = _counted(charge)
    assert result.status == "succeeded"
    assert len(statements) <= 7, f"{len(statements)} statements:\n{_listing(statements)}"
