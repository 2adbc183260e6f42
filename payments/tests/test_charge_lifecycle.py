"""A charge's card part through the generic http provider, faked at the HTTP layer: an
unreachable provider, a "processing" answer settled by the webhook or a later look,
refunds of the card part and of split shares, and a charge owning its payment."""

import threading
from datetime import timedelta

import pytest
from django.db import connection
from django.utils import timezone

from config.errors import IllegalTransition
from payments.charges import charge_create, charges_resolve_pending
from payments.models import Charge, Payment
from payments.services import payment_cancel, payment_refund, payments_reconcile
from payments.tests.factories import CustomerFactory
from payments.tests.fake_http import FakeHTTP
from wallets.models import Account
from wallets.selectors import ledger_audit
from wallets.services import wallet_create, wallet_credit
from webhooks.models import InboundEvent
from webhooks.tests.support import signed_post, stripe_event

pytestmark = pytest.mark.django_db
NOTIFY = "/api/v1/payments/webhook"
LATER = timedelta(minutes=5)


class Provider:
    """A fake http provider whose /charges answers are set per test."""

    def __init__(self, settings):
        self.charge_answers: list[tuple[int, dict]] = []
        self.status: dict[str, dict] = {}
        self.server = FakeHTTP({("POST", "/charges"): self._charge})
        settings.HTTP_PROVIDER_URL = self.server.url
        settings.HTTP_WEBHOOK_SECRET = "http_whsec_test"
        settings.DEFAULT_PAYMENT_PROVIDER = "http"

    def _charge(self, request):
        return self.charge_answers.pop(0) if len(self.charge_answers) > 1 else self.charge_answers[0]

    def answer(self, *answers):
        self.charge_answers = list(answers)

    def route(self, method, path, answer):
        self.server.routes[(method, path)] = answer

    def calls(self, method, path) -> int:
        return sum(1 for r in self.server.requests if (r["method"], r["path"]) == (method, path))


@pytest.fixture
def provider(settings):
    fake = Provider(settings)
    yield fake
    fake.server.close()


@pytest.fixture
def card_customer(customer):
    customer.payment_method = "pm_card_visa"
    customer.save()
    return customer


@pytest.fixture
def wallet(card_customer):
    wallet = wallet_create(customer=card_customer, currency="usd")
    wallet_credit(wallet=wallet, amount=1000)
    return wallet


def audit_ok():
    report = ledger_audit()
    assert report["ok"], report["violations"]


def balances(merchant) -> dict:
    return {
        (a.kind, a.name): a.balance
        for a in Account.objects.filter(merchant=merchant).exclude(kind__in=["external_funding", "customer_wallet"])
    }


@pytest.fixture
def notify(api, settings, django_capture_on_commit_callbacks):
    """Send a signed http-provider notification and run its processing (after commit)."""

    def send(body):
        with django_capture_on_commit_callbacks(execute=True):
            response = signed_post(api, NOTIFY, body, secret=settings.HTTP_WEBHOOK_SECRET, header="X-Paydesk-Signature")
        assert response.status_code == 200, response.content
        return response

    return send


def test_unreachable_provider_keeps_the_charge_pending_then_the_same_key_settles_it(
    merchant, card_customer, wallet, provider
):
    provider.answer((503, {"error": "down"}), (200, {"id": "ch_1", "status": "succeeded"}))
    charge = charge_create(merchant=merchant, customer=card_customer, amount=1500, currency="usd")
    wallet.refresh_from_db()
    assert charge.status == "pending" and (wallet.balance, wallet.held) == (1000, 1000)
    assert charges_resolve_pending(now=timezone.now() + LATER) == 1
    charge.refresh_from_db()
    wallet.refresh_from_db()
    assert charge.status == "succeeded" and (wallet.balance, wallet.held) == (0, 0)
    keys = [r["headers"]["Idempotency-Key"] for r in provider.server.requests]
    assert keys == [f"ch-{charge.pk}"] * 2  # asked twice, with one key: charged once
    assert charge.payment.provider_payment_id == "ch_1"
    audit_ok()


def test_one_broken_charge_does_not_stop_the_resolver(merchant, card_customer, wallet, provider):
    provider.answer((503, {"error": "down"}))
    first = charge_create(merchant=merchant, customer=card_customer, amount=1100, currency="usd")
    other = CustomerFactory(merchant=merchant, payment_method="pm_other")
    second = charge_create(merchant=merchant, customer=other, amount=200, currency="usd")
    assert first.status == second.status == "pending"
    provider.answer((200, {"id": "ch_ok", "status": "succeeded"}))
    Charge.objects.filter(pk=first.pk).update(provider="gone")  # its provider was removed from the install
    assert charges_resolve_pending(now=timezone.now() + LATER) == 2
    second.refresh_from_db()
    assert second.status == "succeeded"
    assert Charge.objects.get(pk=first.pk).status == "pending"


def test_a_charge_never_confirmed_is_failed_at_its_deadline_and_flagged(merchant, card_customer, wallet, provider):
    provider.answer((503, {"error": "down"}))
    charge = charge_create(merchant=merchant, customer=card_customer, amount=1500, currency="usd")
    assert charges_resolve_pending(now=timezone.now() + timedelta(hours=24)) == 1
    assert charges_resolve_pending(now=timezone.now() + timedelta(hours=25)) == 0  # settled: never again
    charge.refresh_from_db()
    wallet.refresh_from_db()
    assert charge.status == "failed" and (wallet.balance, wallet.held) == (1000, 0)
    assert charge.payment.timeline.get(type="charge.abandoned").flagged
    audit_ok()


def test_at_the_deadline_one_last_look_that_finds_the_charge_made_books_it(merchant, card_customer, wallet, provider):
    provider.answer((503, {"error": "down"}))
    charge = charge_create(merchant=merchant, customer=card_customer, amount=1500, currency="usd")
    provider.answer((200, {"id": "ch_late", "status": "succeeded"}))  # it had gone through after all
    assert charges_resolve_pending(now=timezone.now() + timedelta(hours=24)) == 1
    charge.refresh_from_db()
    assert charge.status == "succeeded"
    assert not charge.payment.timeline.filter(type="charge.abandoned").exists()
    audit_ok()


def test_a_charges_hold_is_settled_only_by_its_charge(merchant, merchant_api, card_customer, wallet, provider):
    from wallets.models import Hold

    provider.answer((503, {"error": "down"}))
    charge = charge_create(merchant=merchant, customer=card_customer, amount=1500, currency="usd")
    hold = Hold.objects.get(pk=charge.hold_id)
    for action in ("void", "capture"):
        response = merchant_api.post(f"/api/v1/holds/{hold.pk}/{action}", {}, format="json")
        assert response.status_code == 409, response.content
    provider.answer((200, {"id": "ch_ok", "status": "succeeded"}))
    assert charges_resolve_pending(now=timezone.now() + LATER) == 1
    charge.refresh_from_db()
    assert charge.status == "succeeded"
    audit_ok()


def test_processing_answer_is_settled_by_the_providers_webhook(merchant, card_customer, wallet, provider, notify):
    provider.answer((200, {"id": "ch_slow", "status": "processing"}))
    charge = charge_create(merchant=merchant, customer=card_customer, amount=1500, currency="usd")
    assert charge.status == "pending" and charge.provider_charge_id == "ch_slow"
    # The webhook names the card part (500), never the whole charge.
    body = {"provider": "http", "provider_payment_id": "ch_slow", "status": "paid", "amount": 500, "currency": "usd"}
    notify({**body, "amount": 1500, "id": "evt_wrong"})
    charge.refresh_from_db()
    assert charge.status == "pending"
    assert charge.payment.timeline.get(type="provider.mismatch").flagged
    notify({**body, "id": "evt_ok"})
    charge.refresh_from_db()
    assert charge.status == "succeeded" and charge.payment.status == "succeeded"
    assert not InboundEvent.objects.get(event_id="evt_ok").flagged
    assert charges_resolve_pending(now=timezone.now() + LATER) == 0
    assert balances(merchant)[("merchant_balance", "")] == 1500
    audit_ok()


def test_processing_answer_is_settled_by_a_later_look(merchant, card_customer, wallet, provider):
    provider.answer((200, {"id": "ch_slow", "status": "processing"}))
    provider.route("GET", "/charges/ch_slow", (200, {"id": "ch_slow", "status": "failed", "failure_reason": "nsf"}))
    charge = charge_create(merchant=merchant, customer=card_customer, amount=1500, currency="usd")
    assert charges_resolve_pending(now=timezone.now() + LATER) == 1
    charge.refresh_from_db()
    wallet.refresh_from_db()
    assert (charge.status, charge.failure_reason) == ("failed", "nsf")
    assert (wallet.balance, wallet.held) == (1000, 0)
    assert provider.calls("POST", "/charges") == 1  # looked up, not charged again


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_stripes_webhook_before_the_api_answer_does_not_wedge_the_charge(merchant, wallet, settings, api):
    """Stripe's payment_intent.payment_failed for the off-session intent lands while our
    call is still in flight: the charge settles once, whichever comes first."""
    customer = wallet.customer
    customer.stripe_customer_id, customer.payment_method = "cus_1", "pm_1"
    customer.save()
    settings.STRIPE_SECRET_KEY = "sk_test_" + "x" * 24
    settings.STRIPE_WEBHOOK_SECRET = "whsec_test_race"
    settings.DEFAULT_PAYMENT_PROVIDER = "stripe"

    def intent_then_webhook(request):
        sent = request["body"]  # what Paydesk sent Stripe: the intent's metadata names the charge
        metadata = {"paydesk_charge": sent["metadata[paydesk_charge]"][0], "paydesk_payment": "x"}
        event = stripe_event(
            "payment_intent.payment_failed", event_id="evt_first", id="pi_1", amount=500, metadata=metadata
        )
        response = signed_post(api, "/api/v1/webhooks/stripe", event, secret=settings.STRIPE_WEBHOOK_SECRET)
        assert response.status_code == 200
        error = {"type": "card_error", "code": "card_declined", "message": "Your card was declined."}
        return 402, {"error": {**error, "payment_intent": {"id": "pi_1", "object": "payment_intent"}}}

    server = FakeHTTP({("POST", "/v1/payment_intents"): intent_then_webhook})
    settings.STRIPE_API_BASE = server.url
    try:
        charge = charge_create(merchant=merchant, customer=customer, amount=1500, currency="usd")
    finally:
        server.close()
    wallet.refresh_from_db()
    assert charge.status == "failed" and (wallet.balance, wallet.held) == (1000, 0)
    assert InboundEvent.objects.get(event_id="evt_first").status == "processed"
    assert charge.payment.timeline.filter(type="payment.failed").count() == 1
    assert not charge.payment.timeline.filter(flagged=True).exists()


def test_refund_of_the_card_part_names_the_providers_charge(merchant, card_customer, wallet, provider):
    provider.answer((200, {"id": "ch_9", "status": "succeeded"}))
    provider.route("POST", "/payments/ch_9/refunds", (200, {"id": "re_1", "status": "succeeded"}))
    charge = charge_create(merchant=merchant, customer=card_customer, amount=1500, currency="usd")
    refund = payment_refund(payment=charge.payment)
    assert (refund.status, refund.wallet_amount, refund.provider_amount) == ("succeeded", 1000, 500)
    assert provider.server.requests[-1]["body"]["amount"] == 500
    wallet.refresh_from_db()
    assert wallet.balance == 1000
    assert set(balances(merchant).values()) == {0}
    audit_ok()


def test_a_refused_card_refund_books_back_and_keeps_the_wallet_part(merchant, card_customer, wallet, provider):
    provider.answer((200, {"id": "ch_9", "status": "succeeded"}))
    provider.route("POST", "/payments/ch_9/refunds", (400, {"error": "too late"}))
    splits = [{"destination": "seller", "bps": 5000}]
    charge = charge_create(
        merchant=merchant, customer=card_customer, amount=1500, currency="usd", split_instructions=splits
    )
    from config.errors import ProviderError

    with pytest.raises(ProviderError):
        payment_refund(payment=charge.payment)
    payment = Payment.objects.get(pk=charge.payment_id)
    # The wallet part (1000 of 1500) went back; the seller gave back its share of that only.
    assert (payment.status, payment.amount_refunded) == ("partially_refunded", 1000)
    assert balances(merchant)[("recipient", "seller")] == 750 - 500
    audit_ok()


def test_a_refused_card_refund_of_a_fully_split_charge_does_not_wedge(merchant, card_customer, provider):
    """Amount 2 (1 wallet, 1 card), each of two recipients a half: the refused card part
    must come back to the recipients exactly, out of what the merchant got back."""
    from config.errors import ProviderError

    wallet = wallet_create(customer=card_customer, currency="usd")
    wallet_credit(wallet=wallet, amount=1)
    provider.answer((200, {"id": "ch_2", "status": "succeeded"}))
    provider.route("POST", "/payments/ch_2/refunds", (400, {"error": "refused"}))
    splits = [{"destination": "r1", "bps": 5000}, {"destination": "r2", "bps": 5000}]
    charge = charge_create(
        merchant=merchant, customer=card_customer, amount=2, currency="usd", split_instructions=splits
    )
    with pytest.raises(ProviderError):
        payment_refund(payment=charge.payment)
    refund = charge.payment.refunds.get()
    assert (refund.status, refund.amount, refund.wallet_amount) == ("succeeded", 1, 1)
    payment = Payment.objects.get(pk=charge.payment_id)
    assert (payment.status, payment.amount_refunded) == ("partially_refunded", 1)
    wallet.refresh_from_db()
    assert wallet.balance == 1
    assert sum(balances(merchant).get(("recipient", r), 0) for r in ("r1", "r2")) == 1  # they funded the 1 back
    # The rest can still be refunded once the provider agrees.
    provider.route("POST", "/payments/ch_2/refunds", (200, {"id": "re_2", "status": "succeeded"}))
    assert payment_refund(payment=payment).status == "succeeded"
    assert set(balances(merchant).values()) == {0}
    audit_ok()


@pytest.mark.parametrize("steps", [[1, 2, 333, 500, 164], [999, 1], [1] * 10 + [990], [250, 250, 250, 250]])
def test_partial_refunds_of_a_fully_split_charge_are_paid_by_the_recipients(merchant, customer, steps):
    wallet = wallet_create(customer=customer, currency="usd")
    wallet_credit(wallet=wallet, amount=1000)
    splits = [{"destination": "a", "bps": 3333}, {"destination": "b", "bps": 3333}, {"destination": "c", "bps": 3334}]
    charge = charge_create(merchant=merchant, customer=customer, amount=1000, currency="usd", split_instructions=splits)
    for amount in steps:
        payment_refund(payment=charge.payment, amount=amount)
        assert balances(merchant)[("merchant_balance", "")] == 0  # never the merchant's own money
        audit_ok()
    assert set(balances(merchant).values()) == {0}


def test_refunds_take_split_shares_back_pro_rata_and_exactly(merchant, customer):
    wallet = wallet_create(customer=customer, currency="usd")
    wallet_credit(wallet=wallet, amount=1000)
    splits = [{"destination": "seller-a", "bps": 3333}, {"destination": "seller-b", "bps": 3333}]
    charge = charge_create(merchant=merchant, customer=customer, amount=1000, currency="usd", split_instructions=splits)
    assert balances(merchant) == {
        ("merchant_balance", ""): 334,
        ("recipient", "seller-a"): 333,
        ("recipient", "seller-b"): 333,
    }
    for amount in (1, 2, 333, 500, 164):
        payment_refund(payment=charge.payment, amount=amount)
        audit_ok()
    assert set(balances(merchant).values()) == {0}
    wallet.refresh_from_db()
    assert wallet.balance == 1000
    assert Payment.objects.get(pk=charge.payment_id).status == "refunded"


def test_a_split_that_takes_everything_can_still_be_refunded(merchant, customer):
    wallet = wallet_create(customer=customer, currency="usd")
    wallet_credit(wallet=wallet, amount=1000)
    charge = charge_create(
        merchant=merchant,
        customer=customer,
        amount=1000,
        currency="usd",
        split_instructions=[{"destination": "seller", "bps": 10000}],
    )
    assert payment_refund(payment=charge.payment).status == "succeeded"
    assert set(balances(merchant).values()) == {0}
    audit_ok()


def test_a_charges_payment_is_not_cancelled_nor_expired_by_payments_reconciliation(
    merchant, card_customer, wallet, provider
):
    provider.answer((503, {"error": "down"}))
    charge = charge_create(merchant=merchant, customer=card_customer, amount=1500, currency="usd")
    with pytest.raises(IllegalTransition):
        payment_cancel(payment=charge.payment)
    assert payments_reconcile(now=timezone.now() + timedelta(days=2)) == {}
    assert Payment.objects.get(pk=charge.payment_id).status == "pending"


def test_reusing_an_idempotency_key_for_another_charge_is_a_conflict(merchant, customer):
    from config.errors import Conflict

    wallet = wallet_create(customer=customer, currency="usd")
    wallet_credit(wallet=wallet, amount=1000)
    charge_create(merchant=merchant, customer=customer, amount=100, currency="usd", idempotency_key="k")
    with pytest.raises(Conflict):
        charge_create(merchant=merchant, customer=customer, amount=200, currency="usd", idempotency_key="k")
    wallet.refresh_from_db()
    assert wallet.balance == 900


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_concurrent_partial_refunds_all_land_and_end_refunded(merchant):
    customer = CustomerFactory(merchant=merchant)
    wallet = wallet_create(customer=customer, currency="usd")
    wallet_credit(wallet=wallet, amount=1000)
    charge = charge_create(
        merchant=merchant,
        customer=customer,
        amount=1000,
        currency="usd",
        split_instructions=[{"destination": "seller", "bps": 2500}],
    )
    barrier, errors = threading.Barrier(5), []

    def refund():
        barrier.wait()
        try:
            payment_refund(payment=charge.payment, amount=250)
        except Exception as exc:
            errors.append(type(exc).__name__)
        finally:
            connection.close()

    threads = [threading.Thread(target=refund) for _ in range(5)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    payment = Payment.objects.get(pk=charge.payment_id)
    assert len(errors) == 1 and errors[0] in ("InvalidRequest", "IllegalTransition")  # four fit, not five
    assert (payment.status, payment.amount_refunded) == ("refunded", 1000)
    assert payment.refunds.filter(status="succeeded").count() == 4
    wallet.refresh_from_db()
    assert wallet.balance == 1000
    assert set(balances(merchant).values()) == {0}
    audit_ok()
