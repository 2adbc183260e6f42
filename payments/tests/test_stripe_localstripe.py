"""The stripe provider end to end against localstripe: Paydesk creates the PaymentIntent
through stripe-python (STRIPE_API_BASE), the payer confirms it at "Stripe", and
localstripe delivers its signed event to Paydesk's webhook URL (a live server), which
settles the payment. No network beyond 127.0.0.1."""

import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests
import stripe

from payments.identity.services import api_key_create
from payments.models import Payment

ROOT = Path(__file__).resolve().parents[2]
pytestmark = [pytest.mark.postgres, pytest.mark.django_db(transaction=True)]
SECRET = "whsec_localstripe_e2e"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def localstripe(tmp_path, settings, live_server):
    pytest.importorskip("localstripe")
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "payments.tests.localstripe_server", str(port), str(tmp_path)],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 20
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), 0.2).close()
            break
        except OSError:
            assert proc.poll() is None and time.monotonic() < deadline, proc.stdout.read().decode()[-2000:]
            time.sleep(0.1)
    settings.STRIPE_SECRET_KEY = "sk_test_" + "x" * 24
    settings.STRIPE_API_BASE = base
    settings.STRIPE_WEBHOOK_SECRET = SECRET
    # localstripe signs its events with this secret and posts them to our live server.
    requests.post(
        f"{base}/_config/webhooks/paydesk",
        data={"url": f"{live_server.url}/api/v1/webhooks/stripe", "secret": SECRET},
        timeout=5,
    )
    client = stripe.StripeClient(settings.STRIPE_SECRET_KEY, base_addresses={"api": base})
    yield client
    proc.terminate()
    proc.wait(timeout=10)


@pytest.fixture
def stripe_customer(localstripe, customer):
    created = localstripe.v1.customers.create({"email": customer.email})
    customer.stripe_customer_id = created.id
    customer.save()
    return customer


@pytest.fixture
def api(merchant):
    from rest_framework.test import APIClient

    _, raw = api_key_create(merchant=merchant)
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {raw}")
    return client


def wait_for_status(payment_id, wanted: str, timeout: float = 15) -> Payment:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        payment = Payment.objects.get(pk=payment_id)
        if payment.status == wanted:
            return payment
        time.sleep(0.2)
    raise AssertionError(
        f"payment stayed {payment.status}, wanted {wanted}: {list(payment.timeline.values_list('type', flat=True))}"
    )


def pay_at_stripe(client, intent_id: str, payment_method: str) -> None:
    """What Stripe.js does in the payer's browser: attach a card and confirm."""
    client.v1.payment_intents.update(intent_id, {"payment_method": payment_method})
    try:
        client.v1.payment_intents.confirm(intent_id)
    except stripe.CardError:
        pass  # a declined card: Stripe answers 402 and sends payment_intent.payment_failed


def create(api, customer, order_id="e2e-1"):
    response = api.post(
        "/api/v1/payments",
        {"order_id": order_id, "amount": 2000, "currency": "usd", "customer": str(customer.pk), "provider": "stripe"},
        format="json",
    )
    assert response.status_code == 201, response.content
    return response.json()


def test_payment_succeeds_through_stripes_webhook(localstripe, stripe_customer, api):
    payment = create(api, stripe_customer)
    assert payment["provider_payment_id"].startswith("pi_") and payment["client_secret"]
    intent = localstripe.v1.payment_intents.retrieve(payment["provider_payment_id"])
    assert intent.amount == 2000 and intent.metadata["paydesk_payment"] == payment["id"]
    assert Payment.objects.get(pk=payment["id"]).status == "pending"
    pay_at_stripe(localstripe, payment["provider_payment_id"], "pm_card_visa")
    settled = wait_for_status(payment["id"], "succeeded")
    assert settled.timeline.get(type="payment.succeeded").source == "provider_webhook"


def test_declined_card_leaves_the_payment_open_for_another_card(localstripe, stripe_customer, api):
    payment = create(api, stripe_customer)
    pay_at_stripe(localstripe, payment["provider_payment_id"], "pm_card_chargeCustomerFail")
    deadline = time.monotonic() + 15
    while not Payment.objects.get(pk=payment["id"]).timeline.filter(type="payment.attempt_failed").exists():
        assert time.monotonic() < deadline, "no payment.attempt_failed on the timeline"
        time.sleep(0.2)
    assert Payment.objects.get(pk=payment["id"]).status == "pending"
    assert localstripe.v1.payment_intents.retrieve(payment["provider_payment_id"]).status == "requires_payment_method"


def test_refund_goes_to_stripe(localstripe, stripe_customer, api):
    payment = create(api, stripe_customer)
    pay_at_stripe(localstripe, payment["provider_payment_id"], "pm_card_visa")
    wait_for_status(payment["id"], "succeeded")
    response = api.post(f"/api/v1/payments/{payment['id']}/refunds", {"amount": 500}, format="json")
    assert response.status_code == 201, response.content
    refund = response.json()
    assert refund["provider_refund_id"].startswith("re_") and refund["status"] == "succeeded"
    assert Payment.objects.get(pk=payment["id"]).status == "partially_refunded"


def test_cancel_cancels_the_intent_at_stripe(localstripe, stripe_customer, api):
    payment = create(api, stripe_customer)
    assert api.post(f"/api/v1/payments/{payment['id']}/cancel").status_code == 200
    assert localstripe.v1.payment_intents.retrieve(payment["provider_payment_id"]).status == "canceled"
    assert not Payment.objects.get(pk=payment["id"]).timeline.filter(type="provider.cancel_failed").exists()


def test_reconciliation_asks_stripe(localstripe, stripe_customer, api, settings):
    from datetime import timedelta

    from django.utils import timezone

    from payments.services import payments_reconcile

    settings.STRIPE_WEBHOOK_SECRET = "whsec_not_what_localstripe_signs_with"  # its events are refused now
    payment = create(api, stripe_customer)
    pay_at_stripe(localstripe, payment["provider_payment_id"], "pm_card_visa")
    time.sleep(1.5)
    assert Payment.objects.get(pk=payment["id"]).status == "pending"
    assert payments_reconcile(now=timezone.now() + timedelta(hours=1)) == {"succeeded": 1}
    assert Payment.objects.get(pk=payment["id"]).status == "succeeded"


@pytest.mark.parametrize("card,status", [("pm_card_visa", "succeeded"), ("pm_card_chargeCustomerFail", "failed")])
def test_card_part_of_a_charge_is_charged_off_session(localstripe, stripe_customer, api, settings, card, status):
    from wallets.services import wallet_create, wallet_credit

    settings.DEFAULT_PAYMENT_PROVIDER = "stripe"
    stripe_customer.payment_method = card
    stripe_customer.save()
    wallet = wallet_create(customer=stripe_customer, currency="usd")
    wallet_credit(wallet=wallet, amount=700)
    response = api.post(
        "/api/v1/charges", {"customer": str(stripe_customer.pk), "amount": 2000, "currency": "usd"}, format="json"
    )
    assert response.status_code == 201, response.content
    charge = response.json()
    assert (charge["status"], charge["wallet_amount"], charge["external_amount"]) == (status, 700, 1300)
    assert charge["provider"] == "stripe"
    wallet.refresh_from_db()
    if status == "succeeded":
        intent = localstripe.v1.payment_intents.retrieve(charge["provider_charge_id"])
        assert (intent.amount, intent.status, intent.customer) == (
            1300,
            "succeeded",
            stripe_customer.stripe_customer_id,
        )
        assert (wallet.balance, wallet.held) == (0, 0)
        # localstripe's payment_intent.succeeded names the charge: settled already, no false alarm.
        time.sleep(1.0)
        payment = Payment.objects.get(pk=charge["payment"])
        assert not payment.timeline.filter(flagged=True).exists()
        refund = api.post(f"/api/v1/payments/{charge['payment']}/refunds", {}, format="json")
        assert refund.status_code == 201, refund.content
        assert (refund.json()["wallet_amount"], refund.json()["provider_amount"]) == (700, 1300)
        assert refund.json()["provider_refund_id"].startswith("re_")
        assert (
            localstripe.v1.payment_intents.retrieve(charge["provider_charge_id"]).charges.data[0].amount_refunded
            == 1300
        )
        wallet.refresh_from_db()
        assert wallet.balance == 700
        assert Payment.objects.get(pk=charge["payment"]).status == "refunded"
    else:
        assert charge["failure_reason"] and (wallet.balance, wallet.held) == (700, 0)


@pytest.mark.parametrize("point", ["idempotency_claimed", "intent_committed", "provider_called", "before_done"])
def test_a_charge_crashed_and_retried_is_made_once_at_stripe(
    localstripe, stripe_customer, api, settings, monkeypatch, point
):
    """config/tests/test_crash_exactly_once.py's crash, against Stripe's API: one
    PaymentIntent for the charge; a retry after the provider answered asks with the very
    same Idempotency-Key (Stripe returns the first intent for it; localstripe ignores the
    header, so there the count is not asserted), and the ledger books it once."""
    from datetime import timedelta

    from django.db.models import F

    from config.faults import Crash, armed
    from config.models import IdempotencyKey
    from payments.models import Charge
    from payments.providers.stripe import StripeProvider
    from wallets.selectors import ledger_audit
    from wallets.services import wallet_create, wallet_credit
    from webhooks.models import OutboundEvent

    settings.DEFAULT_PAYMENT_PROVIDER = "stripe"
    stripe_customer.payment_method = "pm_card_visa"
    stripe_customer.save()
    wallet = wallet_create(customer=stripe_customer, currency="usd")
    wallet_credit(wallet=wallet, amount=700)
    keys = []
    original = StripeProvider.charge_off_session

    def recording(self, **kwargs):
        keys.append(kwargs["idempotency_key"])
        return original(self, **kwargs)

    monkeypatch.setattr(StripeProvider, "charge_off_session", recording)
    body = {"customer": str(stripe_customer.pk), "amount": 2000, "currency": "usd"}
    with armed(point), pytest.raises(Crash):
        api.post("/api/v1/charges", body, format="json", HTTP_IDEMPOTENCY_KEY="stripe-crash")
    IdempotencyKey.objects.update(created_at=F("created_at") - timedelta(minutes=10))
    retry = api.post("/api/v1/charges", body, format="json", HTTP_IDEMPOTENCY_KEY="stripe-crash")
    assert retry.status_code == 201, retry.content
    charge = Charge.objects.get()
    assert (charge.status, charge.wallet_amount, charge.external_amount) == ("succeeded", 700, 1300)
    assert keys and set(keys) == {f"ch-{charge.pk}"}
    intents = [
        intent
        for intent in localstripe.v1.payment_intents.list().auto_paging_iter()
        if (intent.metadata or {}).get("paydesk_charge") == str(charge.pk)
    ]
    if point != "provider_called":
        assert len(keys) == 1 and len(intents) == 1
        assert (intents[0].id, intents[0].amount, intents[0].status) == (charge.provider_charge_id, 1300, "succeeded")
    wallet.refresh_from_db()
    assert (wallet.balance, wallet.held) == (0, 0)
    assert OutboundEvent.objects.filter(type="charge.succeeded").count() == 1
    report = ledger_audit()
    assert report["ok"], report["violations"]
