"""Money a provider reports collected is always booked, whatever came before it.

Stripe's PaymentIntents are retryable: payment_intent.payment_failed is one failed
attempt (the intent is back to requires_payment_method), and the payer may try another
card; a later payment_intent.succeeded settles the payment. A success reported for a
payment Paydesk closed (canceled, expired) is booked, refunded through the provider and
flagged, so the ledger always holds what the provider collected.
"""

from datetime import timedelta

import pytest
from django.utils import timezone

from payments.models import Payment, Refund
from payments.services import payment_cancel, payment_create, payments_reconcile
from payments.tests.fake_http import FakeHTTP
from wallets.models import Account, Transfer
from wallets.selectors import ledger_audit
from webhooks.models import InboundEvent, OutboundEvent
from webhooks.tests.support import signed_post, stripe_event

pytestmark = pytest.mark.django_db
INTENT = "pi_3PaydeskPayment0001"  # the recorded events' PaymentIntent
NOTIFY = "/api/v1/payments/webhook"


@pytest.fixture
def deliver(api, settings, django_capture_on_commit_callbacks):
    """deliver(recorded event name, payment, event id, **data.object fields): signed, sent, processed."""
    settings.STRIPE_WEBHOOK_SECRET = "whsec_retries"

    def send(name, payment, event_id, **fields):
        body = stripe_event(name, event_id=event_id, replace={"REPLACE-WITH-PAYMENT-UUID": payment.pk}, **fields)
        with django_capture_on_commit_callbacks(execute=True):
            response = signed_post(api, "/api/v1/webhooks/stripe", body, secret="whsec_retries")
        assert response.status_code == 200, response.content
        payment.refresh_from_db()
        return InboundEvent.objects.get(event_id=event_id)

    return send


@pytest.fixture
def stripe_payment(merchant):
    payment = payment_create(merchant=merchant, order_id="order-1001", amount=1500, currency="usd", provider="mock")
    Payment.objects.filter(pk=payment.pk).update(provider="stripe", provider_payment_id=INTENT)
    payment.refresh_from_db()
    return payment


@pytest.fixture
def stripe_api(settings):
    """Stripe's API for refunds and cancels, at the HTTP layer (stripe-python runs for real)."""
    refund = {"id": "re_3PaydeskAuto01", "object": "refund", "status": "succeeded", "amount": 1500}
    intent = {"id": INTENT, "object": "payment_intent", "status": "canceled"}
    server = FakeHTTP(
        {("POST", "/v1/refunds"): (200, refund), ("POST", f"/v1/payment_intents/{INTENT}/cancel"): (200, intent)}
    )
    settings.STRIPE_SECRET_KEY, settings.STRIPE_API_BASE = "sk_test_" + "r" * 24, server.url
    yield server
    server.close()


def balances(merchant) -> dict:
    accounts = Account.objects.filter(merchant=merchant).values_list("kind", "name", "balance")
    return {(kind, name): balance for kind, name, balance in accounts if balance or kind != "recipient"}


def outbound(type_: str) -> int:
    return OutboundEvent.objects.filter(type=type_).count()


class TestStripeRetries:
    def test_a_failed_attempt_leaves_the_payment_open_with_the_error_on_its_timeline(
        self, stripe_payment, deliver, merchant_api
    ):
        event = deliver("payment_intent.payment_failed", stripe_payment, "evt_fail_1")
        assert event.status == "processed" and not event.flagged
        assert stripe_payment.status == "pending" and stripe_payment.failure_reason == ""
        assert outbound("payment.failed") == 0 and outbound("payment.attempt_failed") == 1
        tracking = merchant_api.get(f"/api/v1/payments/{stripe_payment.pk}/tracking").json()
        attempt = tracking["events"][-1]
        assert attempt["type"] == "payment.attempt_failed" and attempt["source"] == "provider_webhook"
        assert attempt["data"]["error"] == {
            "charge": "ch_3PaydeskChargeFail01",
            "code": "card_declined",
            "decline_code": "generic_decline",
            "message": "Your card was declined.",
            "type": "card_error",
        }
        # Still the order's one pending payment: a second one for it is refused.
        second = merchant_api.post(
            "/api/v1/payments", {"order_id": "order-1001", "amount": 1500, "currency": "usd"}, format="json"
        )
        assert second.status_code == 409

    def test_failed_then_succeeded_books_it_exactly_once(self, stripe_payment, deliver, merchant):
        deliver("payment_intent.payment_failed", stripe_payment, "evt_fail_1")
        event = deliver("payment_intent.succeeded", stripe_payment, "evt_ok_1")
        assert event.status == "processed" and not event.flagged
        assert stripe_payment.status == "succeeded" and stripe_payment.failure_reason == ""
        succeeded = stripe_payment.timeline.get(type="payment.succeeded")
        assert (succeeded.from_status, succeeded.to_status) == ("pending", "succeeded")
        assert balances(merchant) == {("provider_clearing", "stripe"): -1500, ("merchant_balance", ""): 1500}
        assert outbound("payment.succeeded") == 1 and outbound("payment.failed") == 0
        # Redelivered (same event id), resent (another id), or the failure again: nothing more.
        deliver("payment_intent.succeeded", stripe_payment, "evt_ok_1")
        deliver("payment_intent.succeeded", stripe_payment, "evt_ok_2")
        deliver("payment_intent.payment_failed", stripe_payment, "evt_fail_1")
        assert stripe_payment.status == "succeeded"
        assert Transfer.objects.filter(reference=f"payment:{stripe_payment.pk}").count() == 1
        assert balances(merchant)[("merchant_balance", "")] == 1500
        assert outbound("payment.succeeded") == 1
        assert InboundEvent.objects.filter(event_id="evt_ok_1").count() == 1
        assert not stripe_payment.timeline.filter(flagged=True).exists()
        assert ledger_audit()["ok"]

    def test_each_failed_attempt_is_recorded_once(self, stripe_payment, deliver):
        deliver("payment_intent.payment_failed", stripe_payment, "evt_fail_1")
        deliver("payment_intent.payment_failed", stripe_payment, "evt_fail_1b")  # the same attempt, resent
        second_card = {"charge": "ch_3PaydeskChargeFail02", "code": "expired_card", "message": "Expired."}
        deliver("payment_intent.payment_failed", stripe_payment, "evt_fail_2", last_payment_error=second_card)
        attempts = stripe_payment.timeline.filter(type="payment.attempt_failed")
        assert [a.data["error"]["code"] for a in attempts] == ["card_declined", "expired_card"]
        assert stripe_payment.status == "pending" and outbound("payment.attempt_failed") == 2

    def test_a_success_after_the_payment_was_canceled_is_booked_refunded_and_flagged(
        self, stripe_payment, deliver, merchant, stripe_api
    ):
        payment_cancel(payment=stripe_payment)
        event = deliver("payment_intent.succeeded", stripe_payment, "evt_ok_1")  # paid at Stripe anyway
        assert event.flagged and event.flag_reason == f"payment {stripe_payment.pk}: refunded_after_canceled"
        assert stripe_payment.status == "canceled" and stripe_payment.amount_refunded == 1500
        late = stripe_payment.timeline.get(type="provider.late_succeeded")
        assert late.flagged and late.data["booked"] == 1500 and late.data["status_kept"] == "canceled"
        refund = Refund.objects.get(payment=stripe_payment)
        assert (refund.status, refund.amount, refund.provider_refund_id) == ("succeeded", 1500, "re_3PaydeskAuto01")
        [sent] = [r for r in stripe_api.requests if r["path"] == "/v1/refunds"]
        assert sent["body"]["payment_intent"] == [INTENT] and sent["body"]["amount"] == ["1500"]
        assert sent["headers"]["Idempotency-Key"] == f"re-{refund.pk}"
        # Booked in, refunded out: the ledger shows both, and nets to nothing.
        assert Transfer.objects.filter(reference=f"payment:{stripe_payment.pk}").count() == 1
        assert Transfer.objects.filter(reference=f"refund:{refund.pk}").count() == 1
        assert balances(merchant) == {("provider_clearing", "stripe"): 0, ("merchant_balance", ""): 0}
        assert outbound("payment.succeeded") == 0
        # Stripe's echo of our refund and a resent success: nothing more.
        deliver("charge.refunded", stripe_payment, "evt_re_1", amount_refunded=1500, payment_intent=INTENT)
        again = deliver("payment_intent.succeeded", stripe_payment, "evt_ok_2")
        assert not again.flagged
        assert Refund.objects.filter(payment=stripe_payment).count() == 1
        assert len([r for r in stripe_api.requests if r["path"] == "/v1/refunds"]) == 1
        assert Transfer.objects.filter(reference=f"payment:{stripe_payment.pk}").count() == 1
        assert ledger_audit()["ok"]

    def test_a_checkout_paid_after_it_expired_is_refunded(self, merchant, deliver, stripe_api):
        payment = payment_create(merchant=merchant, order_id="c-1", amount=1000, currency="usd", provider="mock")
        Payment.objects.filter(pk=payment.pk).update(provider="stripe", provider_payment_id="cs_late")
        stripe_api.routes[("GET", "/v1/checkout/sessions/cs_late")] = (
            200,
            {"id": "cs_late", "object": "checkout.session", "payment_intent": "pi_late"},
        )
        deliver("checkout.session.expired", payment, "evt_exp", id="cs_late", metadata={})
        assert payment.status == "expired"
        metadata = {"paydesk_payment": str(payment.pk)}
        event = deliver("checkout.session.completed", payment, "evt_paid", id="cs_late", metadata=metadata)
        assert event.flagged and payment.status == "expired" and payment.amount_refunded == 1000
        assert Refund.objects.get(payment=payment).status == "succeeded"
        assert ledger_audit()["ok"]

    def test_reconciliation_keeps_an_intent_awaiting_another_card_open(self, stripe_payment, settings):
        intent = {"id": INTENT, "object": "payment_intent", "status": "requires_payment_method"}
        intent["last_payment_error"] = {"code": "card_declined", "message": "Your card was declined."}
        server = FakeHTTP({("GET", f"/v1/payment_intents/{INTENT}"): (200, intent)})
        settings.STRIPE_SECRET_KEY, settings.STRIPE_API_BASE = "sk_test_" + "q" * 24, server.url
        try:
            assert payments_reconcile(now=timezone.now() + timedelta(hours=1)) == {"still_pending": 1}
        finally:
            server.close()
        stripe_payment.refresh_from_db()
        assert stripe_payment.status == "pending"


@pytest.fixture
def notify(api, settings, django_capture_on_commit_callbacks):
    """A signed provider notification (API.md's /payments/webhook), processed."""

    def send(payment, status):
        body = {
            "provider": payment.provider,
            "provider_payment_id": payment.provider_payment_id,
            "status": status,
            "amount": payment.amount,
            "currency": payment.currency,
        }
        with django_capture_on_commit_callbacks(execute=True):
            response = signed_post(api, NOTIFY, body, secret=settings.MOCK_WEBHOOK_SECRET, header="X-Paydesk-Signature")
        assert response.status_code == 200, response.content
        payment.refresh_from_db()
        return InboundEvent.objects.filter(provider=payment.provider).order_by("-received_at").first()

    return send


class TestGenericProviders:
    @pytest.fixture
    def payment(self, merchant):
        return payment_create(merchant=merchant, order_id="o-1", amount=1500, currency="usd", provider="mock")

    def test_paid_after_failed_succeeds_and_books_once(self, payment, notify, merchant):
        notify(payment, "failed")
        assert payment.status == "failed" and outbound("payment.failed") == 1
        event = notify(payment, "paid")
        assert not event.flagged
        assert payment.status == "succeeded" and payment.failure_reason == ""
        succeeded = payment.timeline.get(type="payment.succeeded")
        assert (succeeded.from_status, succeeded.to_status) == ("failed", "succeeded")
        assert balances(merchant) == {("provider_clearing", "mock"): -1500, ("merchant_balance", ""): 1500}
        notify(payment, "paid")
        assert outbound("payment.succeeded") == 1
        assert Transfer.objects.filter(reference=f"payment:{payment.pk}").count() == 1
        assert ledger_audit()["ok"]

    def test_paid_after_failed_once_the_order_has_a_new_payment_is_refunded(self, payment, notify, merchant):
        notify(payment, "failed")
        retry = payment_create(merchant=merchant, order_id="o-1", amount=1500, currency="usd", provider="mock")
        event = notify(payment, "paid")  # the first link was paid after all: the order would be paid twice
        assert event.flagged
        assert payment.status == "failed" and payment.amount_refunded == 1500
        assert Refund.objects.get(payment=payment).status == "succeeded"
        retry.refresh_from_db()
        assert retry.status == "pending" and not retry.refunds.exists()
        assert balances(merchant) == {("provider_clearing", "mock"): 0, ("merchant_balance", ""): 0}
        notify(payment, "paid")
        assert Transfer.objects.filter(reference=f"payment:{payment.pk}").count() == 1
        assert ledger_audit()["ok"]

    def test_paid_after_expiry_is_refunded_and_split_shares_come_back(self, merchant, notify):
        payment = payment_create(
            merchant=merchant,
            order_id="split-1",
            amount=1000,
            currency="usd",
            provider="mock",
            split_instructions=[{"destination": "seller", "bps": 9000}],
        )
        Payment.objects.filter(pk=payment.pk).update(created_at=timezone.now() - timedelta(days=2))
        assert payments_reconcile() == {"expired": 1}
        notify(payment, "paid")
        assert payment.status == "expired" and payment.amount_refunded == 1000
        assert balances(merchant) == {("provider_clearing", "mock"): 0, ("merchant_balance", ""): 0}
        assert Transfer.objects.filter(reference=f"payment:{payment.pk}").count() == 2  # collected, split
        assert ledger_audit()["ok"]

    def test_an_automatic_refund_the_provider_refuses_leaves_the_money_booked_and_flagged(
        self, merchant, notify, settings
    ):
        server = FakeHTTP(
            {
                ("POST", "/payments"): (200, {"id": "hp_1", "payment_url": "https://links.example/hp_1"}),
                ("POST", "/payments/hp_1/cancel"): (200, {}),
                ("POST", "/payments/hp_1/refunds"): (400, {"error": "refunds closed"}),
            }
        )
        settings.HTTP_PROVIDER_URL, settings.HTTP_WEBHOOK_SECRET = server.url, settings.MOCK_WEBHOOK_SECRET
        try:
            payment = payment_create(merchant=merchant, order_id="h-1", amount=1500, currency="usd", provider="http")
            payment_cancel(payment=payment)
            event = notify(payment, "paid")
            again = notify(payment, "succeeded")  # told twice, in two words
        finally:
            server.close()
        assert event.flagged and not again.flagged
        assert payment.status == "canceled" and payment.amount_refunded == 0
        assert Refund.objects.get(payment=payment).status == "failed"
        assert payment.timeline.get(type="refund.refused").flagged
        # The money stays with the merchant, on the ledger, for staff to return by hand.
        assert balances(merchant) == {("provider_clearing", "http"): -1500, ("merchant_balance", ""): 1500}
        assert Transfer.objects.filter(reference=f"payment:{payment.pk}").count() == 1
        assert ledger_audit()["ok"]
