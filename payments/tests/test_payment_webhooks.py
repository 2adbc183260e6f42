"""Webhook-only state changes: provider notifications and Stripe events move payments."""

import pytest

from payments.models import Payment
from payments.services import payment_create
from webhooks.models import InboundEvent, OutboundEvent
from webhooks.tests.support import signed_post, stripe_event

pytestmark = pytest.mark.django_db
NOTIFY = "/api/v1/payments/webhook"


@pytest.fixture
def payment(merchant):
    return payment_create(merchant=merchant, order_id="o-1", amount=1500, currency="usd")


@pytest.fixture
def notify(api, settings, django_capture_on_commit_callbacks):
    def send(payment, status="paid", **over):
        body = {
            "provider": "mock",
            "provider_payment_id": payment.provider_payment_id,
            "status": status,
            "amount": payment.amount,
            "currency": payment.currency,
            **over,
        }
        with django_capture_on_commit_callbacks(execute=True):
            response = signed_post(api, NOTIFY, body, secret=settings.MOCK_WEBHOOK_SECRET, header="X-Paydesk-Signature")
        assert response.status_code == 200, response.content
        payment.refresh_from_db()
        return response

    return send


def test_paid_notification_succeeds_the_payment(payment, notify):
    notify(payment)
    assert payment.status == "succeeded"
    event = payment.timeline.get(type="payment.succeeded")
    assert (event.from_status, event.to_status, event.source) == ("pending", "succeeded", "provider_webhook")
    outbound = OutboundEvent.objects.get(type="payment.succeeded")
    assert outbound.data["id"] == str(payment.pk) and outbound.data["status"] == "succeeded"


def test_a_failed_notification_gives_the_payment_its_reason(merchant, notify):
    with_reason = payment_create(merchant=merchant, order_id="o-a", amount=1500, currency="usd")
    notify(with_reason, status="failed", failure_reason="card_declined: insufficient funds")
    assert (with_reason.status, with_reason.failure_reason) == ("failed", "card_declined: insufficient funds")
    event = OutboundEvent.objects.get(type="payment.failed", data__id=str(with_reason.pk))
    assert event.data["failure_reason"] == "card_declined: insufficient funds"
    # A provider that names no reason: the payment still says what happened, never null.
    bare = payment_create(merchant=merchant, order_id="o-b", amount=1500, currency="usd")
    notify(bare, status="failed")
    assert (bare.status, bare.failure_reason) == ("failed", "mock reported the payment failed")


def test_repeat_notification_is_harmless(payment, notify):
    notify(payment)
    notify(payment, id="another-delivery-id")
    assert payment.timeline.filter(type="payment.succeeded").count() == 1
    assert OutboundEvent.objects.filter(type="payment.succeeded").count() == 1


def test_amount_mismatch_leaves_it_pending_and_flags(payment, notify):
    notify(payment, amount=1)
    assert payment.status == "pending"
    mismatch = payment.timeline.get(type="provider.mismatch")
    assert mismatch.flagged and mismatch.data["got"]["amount"] == 1
    event = InboundEvent.objects.get()
    assert event.flagged and event.flag_reason == f"payment {payment.pk}: mismatch"  # staff see why
    notify(payment, currency="eur")
    assert payment.status == "pending" and payment.timeline.filter(type="provider.mismatch").count() == 2


def test_late_failure_after_success_changes_nothing(payment, notify):
    notify(payment, "paid")
    notify(payment, "failed")
    assert payment.status == "succeeded"
    assert payment.timeline.filter(type="provider.late_failed").exists()
    assert not OutboundEvent.objects.filter(type="payment.failed").exists()


def test_success_after_failure_is_applied_the_money_was_collected(payment, notify):
    notify(payment, "failed")
    notify(payment, "paid")
    assert payment.status == "succeeded"  # more in test_collected_after_failure.py
    assert not payment.timeline.filter(flagged=True).exists()


def test_unknown_payment_is_200_and_ignored(api, settings, django_capture_on_commit_callbacks, db):
    body = {"provider": "mock", "provider_payment_id": "mock_nope", "status": "paid", "amount": 1, "currency": "usd"}
    with django_capture_on_commit_callbacks(execute=True):
        response = signed_post(api, NOTIFY, body, secret=settings.MOCK_WEBHOOK_SECRET, header="X-Paydesk-Signature")
    assert response.status_code == 200
    assert InboundEvent.objects.get().status == "ignored"


@pytest.fixture
def deliver(api, settings, django_capture_on_commit_callbacks):
    """deliver(recorded event name, payment, event id, **data.object fields): a signed Stripe event, processed."""
    settings.STRIPE_WEBHOOK_SECRET = "whsec_payments"

    def send(name, payment, event_id, **fields):
        body = stripe_event(name, event_id=event_id, replace={"REPLACE-WITH-PAYMENT-UUID": payment.pk}, **fields)
        with django_capture_on_commit_callbacks(execute=True):
            response = signed_post(api, "/api/v1/webhooks/stripe", body, secret="whsec_payments")
        assert response.status_code == 200
        payment.refresh_from_db()
        return InboundEvent.objects.get(event_id=event_id)

    return send


class TestStripeEvents:
    @pytest.fixture
    def stripe_payment(self, merchant):
        payment = payment_create(merchant=merchant, order_id="s-1", amount=1500, currency="usd", provider="mock")
        Payment.objects.filter(pk=payment.pk).update(provider="stripe", provider_payment_id="pi_3PaydeskPayment0001")
        payment.refresh_from_db()
        return payment

    def test_payment_intent_succeeded(self, stripe_payment, deliver):
        event = deliver("payment_intent.succeeded", stripe_payment, "evt_s1")
        assert event.status == "processed" and stripe_payment.status == "succeeded"

    def test_payment_intent_failed_is_one_failed_attempt(self, stripe_payment, deliver):
        deliver("payment_intent.payment_failed", stripe_payment, "evt_f1")
        assert stripe_payment.status == "pending"  # the payer may try another card
        assert stripe_payment.timeline.get(type="payment.attempt_failed").data["error"]["code"] == "card_declined"

    def test_success_before_a_late_failure(self, stripe_payment, deliver):
        deliver("payment_intent.succeeded", stripe_payment, "evt_s1")
        deliver("payment_intent.payment_failed", stripe_payment, "evt_f1")
        assert stripe_payment.status == "succeeded"

    def test_amount_mismatch_from_stripe(self, stripe_payment, deliver):
        event = deliver("payment_intent.succeeded", stripe_payment, "evt_s1", amount_received=1, amount=1)
        assert stripe_payment.status == "pending" and event.flagged

    def test_checkout_session_completed_and_expired(self, merchant, deliver):
        paid = payment_create(merchant=merchant, order_id="c-1", amount=1000, currency="usd")
        Payment.objects.filter(pk=paid.pk).update(provider="stripe", provider_payment_id="cs_paid")
        deliver("checkout.session.completed", paid, "evt_c1", id="cs_paid", metadata={"paydesk_payment": str(paid.pk)})
        assert paid.status == "succeeded"
        gone = payment_create(merchant=merchant, order_id="c-2", amount=1000, currency="usd")
        Payment.objects.filter(pk=gone.pk).update(provider="stripe", provider_payment_id="cs_gone")
        deliver("checkout.session.expired", gone, "evt_c2", id="cs_gone", metadata={})
        assert gone.status == "expired"

    def test_checkout_for_something_else_is_ignored(self, stripe_payment, deliver):
        event = deliver("checkout.session.completed", stripe_payment, "evt_c3", metadata={}, id="cs_other")
        assert event.status == "ignored" and stripe_payment.status == "pending"

    def test_charge_refunded_at_stripe_is_recorded(self, stripe_payment, deliver):
        deliver("payment_intent.succeeded", stripe_payment, "evt_s1")
        deliver("charge.refunded", stripe_payment, "evt_r1")  # amount_refunded: 500 of 1500
        assert stripe_payment.status == "partially_refunded" and stripe_payment.amount_refunded == 500
        deliver("charge.refunded", stripe_payment, "evt_r2")  # the same total again: nothing new
        assert stripe_payment.amount_refunded == 500 and stripe_payment.refunds.count() == 1

    def test_refund_at_stripe_is_booked_and_a_repeated_success_is_no_alarm(self, stripe_payment, deliver):
        from wallets.models import Account
        from wallets.selectors import ledger_audit

        deliver("payment_intent.succeeded", stripe_payment, "evt_s1")
        deliver("charge.refunded", stripe_payment, "evt_r1")  # 500 of 1500 refunded in the dashboard
        balance = Account.objects.get(merchant=stripe_payment.merchant, kind="merchant_balance", currency="usd")
        assert balance.balance == 1000
        again = deliver("payment_intent.succeeded", stripe_payment, "evt_s2")  # redelivered, after the refund
        assert not again.flagged and not stripe_payment.timeline.filter(flagged=True).exists()
        assert ledger_audit()["ok"]


class TestStripeCharges:
    """A charge's card part is an off-session PaymentIntent: Stripe's events about it
    concern the card part only, never the wallet part."""

    @pytest.fixture
    def charge(self, merchant, settings):
        from payments.charges import charge_create
        from payments.tests.factories import CustomerFactory
        from payments.tests.fake_http import FakeHTTP
        from wallets.services import wallet_create, wallet_credit

        customer = CustomerFactory(merchant=merchant, stripe_customer_id="cus_1", payment_method="pm_1")
        wallet_credit(wallet=wallet_create(customer=customer, currency="usd"), amount=1000)
        intent = {"id": "pi_card", "object": "payment_intent", "status": "succeeded", "amount": 500, "currency": "usd"}
        server = FakeHTTP({("POST", "/v1/payment_intents"): (200, intent)})
        settings.STRIPE_SECRET_KEY, settings.STRIPE_API_BASE = "sk_test_" + "c" * 24, server.url
        settings.DEFAULT_PAYMENT_PROVIDER = "stripe"
        try:
            charge = charge_create(merchant=merchant, customer=customer, amount=1500, currency="usd")
        finally:
            server.close()
        assert charge.status == "succeeded"
        return charge

    def test_success_event_for_the_card_part_is_no_mismatch(self, charge, deliver):
        metadata = {"paydesk_charge": str(charge.pk), "paydesk_payment": str(charge.payment_id)}
        event = deliver(
            "payment_intent.succeeded", charge.payment, "evt_c", id="pi_card", amount=500, amount_received=500,
            metadata=metadata,
        )  # fmt: skip
        assert event.status == "processed" and not event.flagged
        assert not charge.payment.timeline.filter(flagged=True).exists()

    def test_card_part_refunded_in_the_dashboard(self, charge, deliver):
        from wallets.models import Account
        from wallets.selectors import ledger_audit

        metadata = {"paydesk_payment": str(charge.payment_id)}
        deliver("charge.refunded", charge.payment, "evt_r", payment_intent="pi_card", amount=500, metadata=metadata)
        payment = charge.payment
        payment.refresh_from_db()
        assert (payment.status, payment.amount_refunded) == ("partially_refunded", 500)
        refund = payment.refunds.get()
        assert (refund.wallet_amount, refund.provider_amount) == (0, 500)
        wallet = Account.objects.get(customer=charge.customer, kind="customer_wallet")
        assert wallet.balance == 0  # the wallet part stays spent: Stripe only refunded the card
        # Stripe then reports its whole card part refunded: nothing more is ours to record.
        deliver(
            "charge.refunded", charge.payment, "evt_r2", payment_intent="pi_card", amount=500, amount_refunded=500,
            metadata=metadata,
        )  # fmt: skip
        assert payment.refunds.count() == 1
        assert ledger_audit()["ok"]


def test_split_instructions_of_a_payment_settle_when_it_succeeds_and_refunds_take_them_back(merchant, notify):
    from payments.services import payment_refund
    from wallets.models import Account
    from wallets.selectors import ledger_audit

    payment = payment_create(
        merchant=merchant,
        order_id="split-1",
        amount=1000,
        currency="usd",
        split_instructions=[{"destination": "seller", "bps": 9000}],
    )
    notify(payment)

    def balances():
        accounts = Account.objects.filter(merchant=merchant).values_list("kind", "name", "balance")
        return {(kind, name): balance for kind, name, balance in accounts}

    clearing, seller = ("provider_clearing", "mock"), ("recipient", "seller")
    merchant_balance = ("merchant_balance", "")
    assert balances() == {clearing: -1000, merchant_balance: 100, seller: 900}
    payment_refund(payment=payment, amount=500)
    assert balances() == {clearing: -500, merchant_balance: 50, seller: 450}
    assert ledger_audit()["ok"]
