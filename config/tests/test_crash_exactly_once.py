"""Exactly once after a crash, on every money POST (config/api/idempotency.py's policy).

Each case makes its request with an Idempotency-Key and dies at one fault point
(config/faults.py): after the claim, after the intent committed, after the provider
answered, before the key is done, after everything committed. The key is then left in
flight as a dead process leaves it; once its lease has passed the client retries with
the same key, and the test asserts exactly one effect: in the ledger (balances, transfers,
audit_ledger clean), at the provider (every call for the effect made with one provider
idempotency key, which the provider dedupes on, as Stripe does) and in the outbox.
A third request replays the retry's answer.
"""

from dataclasses import dataclass, field
from datetime import timedelta

import pytest
from django.db.models import F

from config.faults import Crash, armed
from config.models import IdempotencyKey
from credits.selectors import credits_balance
from credits.services import credits_grant
from installments.models import InstallmentOrder
from installments.services import installment_order_create
from payments.charges import charge_create
from payments.models import Charge, MockCheckout, Payment, Refund
from payments.providers.mock import MockProvider
from payments.services import payment_create
from wallets.models import Account, Hold, Transfer
from wallets.selectors import ledger_audit
from wallets.services import hold_create, wallet_create, wallet_credit
from webhooks.models import OutboundEvent

pytestmark = [pytest.mark.postgres, pytest.mark.django_db(transaction=True)]

ATOMIC = ["idempotency_claimed", "before_done", "after_commit"]
PROVIDER = ["idempotency_claimed", "intent_committed", "provider_called", "before_done", "after_commit"]


@dataclass
class ProviderSpy:
    """Every provider idempotency key the mock was asked with, per method."""

    keys: dict = field(default_factory=dict)
    cancels: int = 0


@pytest.fixture
def spy(monkeypatch):
    spy = ProviderSpy()

    def recording(name):
        original = getattr(MockProvider, name)

        def call(self, **kwargs):
            spy.keys.setdefault(name, []).append(kwargs["idempotency_key"])
            return original(self, **kwargs)

        return call

    for name in ("create_payment", "charge_off_session", "refund"):
        monkeypatch.setattr(MockProvider, name, recording(name))
    original_cancel = MockProvider.cancel_payment

    def cancel(self, **kwargs):
        spy.cancels += 1
        return original_cancel(self, **kwargs)

    monkeypatch.setattr(MockProvider, "cancel_payment", cancel)
    return spy


def one_provider_effect(spy: ProviderSpy, method: str) -> None:
    keys = spy.keys.get(method, [])
    assert keys, f"the provider was never asked ({method})"
    assert len(set(keys)) == 1, f"{method} asked with several keys: {keys}"


def events(type_: str) -> int:
    return OutboundEvent.objects.filter(type=type_).count()


def balance(account: Account) -> int:
    account.refresh_from_db()
    return account.balance


def crash_then_retry(client, path: str, body: dict, point: str, key: str = "crash-key"):
    with armed(point), pytest.raises(Crash):
        client.post(path, body, format="json", HTTP_IDEMPOTENCY_KEY=key)
    # What the dead process left: the key in flight (or done, for after_commit). Let its
    # lease pass, as the retry a client makes after a timeout would find it.
    IdempotencyKey.objects.update(created_at=F("created_at") - timedelta(minutes=10))
    retry = client.post(path, body, format="json", HTTP_IDEMPOTENCY_KEY=key)
    replay = client.post(path, body, format="json", HTTP_IDEMPOTENCY_KEY=key)
    assert replay["Idempotent-Replayed"] == "true"
    assert (replay.status_code, replay.content) == (retry.status_code, retry.content)
    report = ledger_audit()
    assert report["ok"], report["violations"]
    return retry


@pytest.fixture
def wallet(customer):
    w = wallet_create(customer=customer, currency="usd")
    wallet_credit(wallet=w, amount=1000)
    return w


@pytest.fixture
def card(customer):
    customer.payment_method = "mock_card_ok"
    customer.save(update_fields=["payment_method"])
    return customer


# --- Database-only requests: the effect and the key's completion in one transaction ---------


@pytest.mark.parametrize("point", ATOMIC)
def test_wallet_credit(merchant_api, customer, wallet, point):
    credited = events("wallet.credited")
    r = crash_then_retry(
        merchant_api, f"/api/v1/wallets/{customer.pk}/credit", {"amount": 500, "currency": "usd"}, point
    )
    assert r.status_code == 200, r.content
    assert r.json()["balance"] == 1500 == balance(wallet)
    assert events("wallet.credited") == credited + 1


@pytest.mark.parametrize("point", ATOMIC)
def test_wallet_debit(merchant_api, customer, wallet, point):
    r = crash_then_retry(
        merchant_api, f"/api/v1/wallets/{customer.pk}/debit", {"amount": 300, "currency": "usd"}, point
    )
    assert r.status_code == 200, r.content
    assert balance(wallet) == 700
    assert events("wallet.debited") == 1


@pytest.mark.parametrize("point", ATOMIC)
def test_hold_create(merchant_api, customer, wallet, point):
    r = crash_then_retry(
        merchant_api, f"/api/v1/wallets/{customer.pk}/holds", {"amount": 200, "currency": "usd"}, point
    )
    assert r.status_code == 201, r.content
    assert Hold.objects.filter(account=wallet).count() == 1
    wallet.refresh_from_db()
    assert (wallet.balance, wallet.held) == (1000, 200)


@pytest.mark.parametrize("point", ATOMIC)
def test_hold_capture(merchant_api, wallet, point):
    hold = hold_create(account=wallet, amount=200)
    r = crash_then_retry(merchant_api, f"/api/v1/holds/{hold.pk}/capture", {"amount": 150}, point)
    assert r.status_code == 200, r.content
    wallet.refresh_from_db()
    assert (wallet.balance, wallet.held) == (850, 0)
    assert Transfer.objects.filter(entries__account=wallet).count() == 2  # the top-up, the capture


@pytest.mark.parametrize("point", ATOMIC)
def test_hold_void(merchant_api, wallet, point):
    hold = hold_create(account=wallet, amount=200)
    r = crash_then_retry(merchant_api, f"/api/v1/holds/{hold.pk}/void", {}, point)
    assert r.status_code == 200, r.content
    assert r.json()["status"] == "voided"
    wallet.refresh_from_db()
    assert (wallet.balance, wallet.held) == (1000, 0)


@pytest.mark.parametrize("point", ATOMIC)
def test_wallet_only_charge(merchant_api, customer, wallet, point):
    body = {"customer": str(customer.pk), "amount": 600, "currency": "usd"}
    r = crash_then_retry(merchant_api, "/api/v1/charges", body, point)
    assert r.status_code == 201, r.content
    assert Charge.objects.count() == 1 and Payment.objects.count() == 1
    assert balance(wallet) == 400
    assert events("charge.succeeded") == 1


@pytest.mark.parametrize("path", ["/api/v1/credits/debit", "/api/v1/use-credits"])
@pytest.mark.parametrize("point", ATOMIC)
def test_credit_debit(merchant_api, customer, path, point):
    credits_grant(customer=customer, units=100, source="merchant")
    field_name = "delta" if path.endswith("debit") else "units"
    r = crash_then_retry(merchant_api, path, {field_name: 30, "customer": str(customer.pk)}, point)
    assert r.status_code == 200, r.content
    assert r.json() == {"data": {"balance": 70}}
    assert credits_balance(customer=customer) == 70


@pytest.mark.parametrize("point", ATOMIC)
def test_credit_grant(merchant_api, customer, point):
    body = {"customer": str(customer.pk), "units": 50, "reason": "goodwill"}
    r = crash_then_retry(merchant_api, "/api/v1/credits/grants", body, point)
    assert r.status_code == 201, r.content
    assert credits_balance(customer=customer) == 50
    assert customer.credit_grants.count() == 1
    assert events("credits.granted") == 1


# --- Requests that call a provider: the row carries the key, a retry resumes it -------------


@pytest.mark.parametrize("point", PROVIDER)
def test_payment_create(merchant_api, merchant, spy, point):
    tokens = merchant.subscription.tokens_remaining
    body = {"order_id": "crash-1", "amount": 2599, "currency": "usd", "provider": "mock"}
    r = crash_then_retry(merchant_api, "/api/v1/payments", body, point)
    assert r.status_code == 201, r.content
    payment = Payment.objects.get()
    assert r.json()["id"] == str(payment.pk) and payment.status == "pending" and payment.provider_payment_id
    assert MockCheckout.objects.count() == 1
    one_provider_effect(spy, "create_payment")
    merchant.subscription.refresh_from_db()
    assert merchant.subscription.tokens_remaining == tokens - 1  # one quota token, not two


@pytest.mark.parametrize("point", PROVIDER)
def test_payment_cancel(merchant_api, merchant, spy, point):
    payment = payment_create(merchant=merchant, order_id="crash-2", amount=500, currency="usd", provider="mock")
    r = crash_then_retry(merchant_api, f"/api/v1/payments/{payment.pk}/cancel", {}, point)
    assert r.status_code == 200, r.content
    assert r.json()["status"] == "canceled"
    assert events("payment.canceled") == 1
    assert MockCheckout.objects.get(payment=payment).status == "canceled"
    assert spy.cancels >= 1  # asked (again after a crash before it): canceling twice is harmless


@pytest.mark.parametrize("point", PROVIDER)
def test_refund(merchant_api, merchant, customer, card, spy, point):
    charge = charge_create(merchant=merchant, customer=customer, amount=1000, currency="usd")
    assert charge.status == "succeeded" and charge.external_amount == 1000
    r = crash_then_retry(merchant_api, f"/api/v1/payments/{charge.payment_id}/refunds", {"amount": 300}, point)
    assert r.status_code == 201, r.content
    refund = Refund.objects.get()
    assert (refund.amount, refund.status) == (300, "succeeded")
    one_provider_effect(spy, "refund")
    payment = Payment.objects.get(pk=charge.payment_id)
    assert (payment.status, payment.amount_refunded) == ("partially_refunded", 300)
    assert events("payment.refunded") == 1


@pytest.mark.parametrize("point", PROVIDER)
def test_card_charge(merchant_api, customer, wallet, card, spy, point):
    body = {"customer": str(customer.pk), "amount": 1500, "currency": "usd"}
    r = crash_then_retry(merchant_api, "/api/v1/charges", body, point)
    assert r.status_code == 201, r.content
    charge = Charge.objects.get()
    assert (charge.status, charge.wallet_amount, charge.external_amount) == ("succeeded", 1000, 500)
    assert r.json()["id"] == str(charge.pk)
    one_provider_effect(spy, "charge_off_session")
    wallet.refresh_from_db()
    assert (wallet.balance, wallet.held) == (0, 0)
    assert events("charge.succeeded") == 1


@pytest.mark.parametrize("point", PROVIDER)
def test_installment_order_with_down_payment(merchant_api, customer, card, spy, point):
    body = {
        "customer": str(customer.pk),
        "amount": 1000,
        "currency": "usd",
        "down_payment": 100,
        "installment_count": 3,
        "interval": "month",
    }
    r = crash_then_retry(merchant_api, "/api/v1/installments/orders", body, point)
    assert r.status_code == 201, r.content
    order = InstallmentOrder.objects.get()
    assert r.json()["id"] == str(order.pk)
    down = order.installments.get(sequence=0)
    assert down.status == "paid"
    assert Charge.objects.count() == 1
    one_provider_effect(spy, "charge_off_session")
    assert events("installment.paid") == 1


@pytest.mark.parametrize("point", PROVIDER)
def test_installment_pay(merchant_api, merchant, customer, card, spy, point):
    order = installment_order_create(
        merchant=merchant, customer=customer, amount=900, currency="usd", installment_count=3, interval="month"
    )
    r = crash_then_retry(merchant_api, f"/api/v1/installments/orders/{order.pk}/pay", {}, point)
    assert r.status_code == 200, r.content
    statuses = list(order.installments.order_by("sequence").values_list("status", flat=True))
    assert statuses == ["paid", "scheduled", "scheduled"]  # the next one paid, once
    assert Charge.objects.count() == 1
    one_provider_effect(spy, "charge_off_session")
    assert events("installment.paid") == 1


def test_a_request_past_its_lease_loses_to_the_retry_that_took_its_key(
    merchant_api, merchant_key, customer, wallet, settings, monkeypatch
):
    """The completion applies only while the request still owns the key: a first request
    so slow that a retry took its key over rolls its own effect back (409), and the
    retry's debit is the one that stands. Two threads, two connections."""
    import threading
    import time

    from rest_framework.test import APIClient

    from config.api import idempotency

    settings.IDEMPOTENCY_IN_FLIGHT_LEASE = timedelta(0)  # every in-flight key counts as abandoned
    path = f"/api/v1/wallets/{customer.pk}/debit"
    body = {"amount": 100, "currency": "usd"}
    original = idempotency._finish
    retry = {}

    def run_retry():
        other = APIClient()
        other.credentials(HTTP_AUTHORIZATION=f"Bearer {merchant_key}")
        retry["response"] = other.post(path, body, format="json", HTTP_IDEMPOTENCY_KEY="slow")

    def finish_after_a_takeover(row, response):
        if "thread" not in retry:  # the first request, its debit done but not committed
            retry["thread"] = threading.Thread(target=run_retry)
            retry["thread"].start()
            deadline = time.monotonic() + 10
            while IdempotencyKey.objects.filter(pk=row.pk, created_at=row.created_at).exists():
                assert time.monotonic() < deadline, "the retry never took the key over"
                time.sleep(0.02)
        return original(row, response)

    monkeypatch.setattr(idempotency, "_finish", finish_after_a_takeover)
    first = merchant_api.post(path, body, format="json", HTTP_IDEMPOTENCY_KEY="slow")
    retry["thread"].join(10)
    assert first.status_code == 409, first.content
    assert retry["response"].status_code == 200, retry["response"].content
    assert balance(wallet) == 900  # debited once: by the retry
    assert events("wallet.debited") == 1
    report = ledger_audit()
    assert report["ok"], report["violations"]
