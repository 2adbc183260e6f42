"""Stripe events through the real webhook URL: signed, stored, processed (real-shaped payloads)."""

import json
from pathlib import Path

import pytest

from credits.models import Grant, Revocation, StripeInvoicePayment
from credits.selectors import credits_balance
from credits.services import credits_debit
from credits.tests.factories import CreditPackFactory
from webhooks.models import InboundEvent
from webhooks.tests.support import signed_post, stripe_event

pytestmark = pytest.mark.django_db
URL = "/api/v1/webhooks/stripe"
PLACEHOLDER = "REPLACE-WITH-CUSTOMER-UUID"


@pytest.fixture
def deliver(client, stripe_secret, django_capture_on_commit_callbacks):
    def send(event):
        with django_capture_on_commit_callbacks(execute=True):
            response = signed_post(client, URL, event, secret=stripe_secret)
        assert response.status_code == 200, response.content
        return InboundEvent.objects.get(provider="stripe", event_id=event["id"])

    return send


@pytest.fixture
def packs(merchant):
    return (
        CreditPackFactory(
            merchant=merchant, code="starter-100", credits=100, stripe_price_id="price_PaydeskStarter100"
        ),
        CreditPackFactory(merchant=merchant, code="pro-500", credits=500, stripe_price_id="price_PaydeskPro500"),
    )


@pytest.fixture
def stripe_customer(customer):
    customer.stripe_customer_id = "cus_PaydeskDemo0001"
    customer.save(update_fields=["stripe_customer_id"])
    return customer


def checkout_event(customer, event_id="evt_cs_1", **fields):
    return stripe_event("checkout.session.completed", event_id=event_id, replace={PLACEHOLDER: customer.pk}, **fields)


def test_checkout_completed_grants_metadata_credits_once(customer, deliver, client, stripe_secret):
    event = checkout_event(customer)
    stored = deliver(event)
    assert stored.status == "processed"
    assert credits_balance(customer=customer) == 100
    grant = Grant.objects.get()
    assert (grant.stripe_event_id, grant.source, grant.stripe_payment_intent) == (
        "evt_cs_1",
        "stripe_checkout",
        "pi_3PaydeskCreditsPI0001",
    )
    for _ in range(3):
        deliver(event)
    assert Grant.objects.count() == 1 and credits_balance(customer=customer) == 100


def test_a_session_completed_under_several_event_ids_grants_once(customer, deliver):
    """A Checkout Session completes once: events with other ids for the same `cs_...`
    grant nothing more, and say which event granted it."""
    first = deliver(checkout_event(customer, event_id="evt_cs_first"))
    assert first.status == "processed"
    session = first.payload["data"]["object"]["id"]
    assert session.startswith("cs_")
    for event_id in ("evt_cs_second", "evt_cs_third", "evt_cs_fourth"):
        stored = deliver(checkout_event(customer, event_id=event_id))
        assert stored.status == "ignored"
        assert f"checkout session {session} was already granted by event evt_cs_first" in stored.last_error
    assert Grant.objects.get().stripe_checkout_session == session
    assert credits_balance(customer=customer) == 100


def test_another_session_of_the_same_customer_grants_again(customer, deliver):
    deliver(checkout_event(customer, event_id="evt_cs_a"))
    assert deliver(checkout_event(customer, event_id="evt_cs_b", id="cs_test_another_session")).status == "processed"
    assert credits_balance(customer=customer) == 200


def test_checkout_falls_back_to_client_reference_id(customer, deliver):
    event = checkout_event(customer, metadata={"credits": "25"})
    assert deliver(event).status == "processed"
    assert credits_balance(customer=customer) == 25


def test_checkout_with_a_pack_expiry_sets_it(customer, deliver):
    CreditPackFactory(merchant=customer.merchant, code="starter-100", expires_in_days=7)
    deliver(checkout_event(customer))
    assert Grant.objects.get().expires_at is not None


@pytest.mark.parametrize(
    ("fields", "reason"),
    [
        ({"payment_status": "unpaid"}, "not paid"),
        (
            {"metadata": {"credits": "10", "paydesk_customer": "nobody"}, "client_reference_id": None},
            "no Paydesk customer",
        ),
        ({"metadata": {"credits": "ten"}}, "not a positive integer"),
    ],
)
def test_unmapped_checkout_is_ignored_with_the_reason(customer, deliver, fields, reason):
    stored = deliver(checkout_event(customer, **fields))
    assert stored.status == "ignored"
    assert reason in stored.last_error
    assert not Grant.objects.exists()


def test_checkout_for_an_unknown_customer_uuid_is_ignored(customer, deliver):
    stored = deliver(
        checkout_event(customer, metadata={"credits": "5", "paydesk_customer": "7d4c5a0e-3d7c-4c7e-9a59-3c2f1d0b9a11"})
    )
    assert stored.status == "ignored" and "no Paydesk customer" in stored.last_error


def test_ignored_event_is_listed_for_staff_in_admin(customer, deliver, admin_client):
    deliver(checkout_event(customer, payment_status="unpaid"))
    response = admin_client.get("/admin/webhooks/inboundevent/?status=ignored")
    assert response.status_code == 200
    assert b"evt_cs_1" in response.content


@pytest.mark.parametrize("name", ["invoice.paid", "invoice.paid.legacy-2024-06-20"])
def test_invoice_paid_grants_every_line(stripe_customer, packs, deliver, name):
    stored = deliver(stripe_event(name, event_id=f"evt_{name}"))
    assert stored.status == "processed"
    assert credits_balance(customer=stripe_customer) == 600
    assert sorted(Grant.objects.values_list("stripe_line", "units")) == [
        ("il_1PaydeskLine0001", 100),
        ("il_1PaydeskLine0002", 500),
    ]
    deliver(stripe_event(name, event_id=f"evt_{name}"))
    assert credits_balance(customer=stripe_customer) == 600


def test_invoice_line_quantity_multiplies_the_pack(stripe_customer, packs, deliver):
    event = stripe_event("invoice.paid", event_id="evt_inv_q")
    event["data"]["object"]["lines"]["data"][0]["quantity"] = 3
    deliver(event)
    assert credits_balance(customer=stripe_customer) == 3 * 100 + 500


def test_invoice_with_unknown_prices_is_ignored(stripe_customer, deliver):
    stored = deliver(stripe_event("invoice.paid", event_id="evt_inv_unknown"))
    assert stored.status == "ignored"
    assert "price_PaydeskStarter100" in stored.last_error
    assert credits_balance(customer=stripe_customer) == 0


def test_invoice_of_an_unknown_stripe_customer_is_ignored(customer, packs, deliver):
    stored = deliver(stripe_event("invoice.paid", event_id="evt_inv_nocus"))
    assert stored.status == "ignored" and "cus_PaydeskDemo0001" in stored.last_error
    assert not Grant.objects.exists()


def refund_event(event_id, *, amount_refunded, refunded=False, intent="pi_3PaydeskCreditsPI0001"):
    return stripe_event(
        "charge.refunded",
        event_id=event_id,
        payment_intent=intent,
        amount=1000,
        amount_refunded=amount_refunded,
        refunded=refunded,
        metadata={},
    )


def test_full_refund_revokes_the_credits_bought(customer, deliver):
    deliver(checkout_event(customer))
    stored = deliver(refund_event("evt_ref_1", amount_refunded=1000, refunded=True))
    assert stored.status == "processed"
    assert credits_balance(customer=customer) == 0
    revocation = Revocation.objects.get()
    assert (revocation.requested, revocation.revoked, revocation.shortfall) == (100, 100, 0)


def test_refund_after_spending_revokes_down_to_zero_and_records_the_shortfall(customer, deliver):
    deliver(checkout_event(customer))
    credits_debit(customer=customer, units=70)
    deliver(refund_event("evt_ref_1", amount_refunded=1000, refunded=True))
    assert credits_balance(customer=customer) == 0
    revocation = Revocation.objects.get()
    assert (revocation.revoked, revocation.shortfall) == (30, 70)


def test_partial_refunds_are_cumulative_and_repeat_safe(customer, deliver):
    deliver(checkout_event(customer))
    deliver(refund_event("evt_ref_1", amount_refunded=250))
    assert credits_balance(customer=customer) == 75
    deliver(refund_event("evt_ref_1", amount_refunded=250))  # the same event again
    deliver(refund_event("evt_ref_0", amount_refunded=100))  # an older total, arriving late
    assert credits_balance(customer=customer) == 75
    deliver(refund_event("evt_ref_2", amount_refunded=1000, refunded=True))
    assert credits_balance(customer=customer) == 0
    assert sum(Revocation.objects.values_list("requested", flat=True)) == 100


def test_refund_of_a_charge_that_bought_no_credits_is_ignored(customer, deliver):
    deliver(checkout_event(customer))
    stored = deliver(refund_event("evt_ref_x", amount_refunded=1000, refunded=True, intent="pi_other"))
    assert stored.status == "ignored" and "did not buy credits" in stored.last_error
    assert credits_balance(customer=customer) == 100


@pytest.mark.parametrize("checkout_first", [True, False])
def test_a_checkout_and_the_invoice_it_made_grant_once(stripe_customer, packs, deliver, checkout_first):
    checkout = checkout_event(stripe_customer, invoice="in_1PaydeskInvoice0001")
    invoice = stripe_event("invoice.paid", event_id="evt_inv_of_cs")
    invoice["data"]["object"]["lines"]["data"] = invoice["data"]["object"]["lines"]["data"][:1]  # the starter pack
    first, second = (checkout, invoice) if checkout_first else (invoice, checkout)
    assert deliver(first).status == "processed"
    stored = deliver(second)
    assert stored.status == "ignored" and "already granted" in stored.last_error
    assert credits_balance(customer=stripe_customer) == 100
    assert Grant.objects.count() == 1


# --- Refunds of invoices, every API shape ---------------------------------------------------

INVOICE = "in_1PaydeskInvoice0001"


def invoice_payment_event(event_id="evt_inpay_1"):
    """invoice_payment.paid (API 2025-03-31 and later): which PaymentIntent paid which invoice."""
    event = json.loads((Path(__file__).parent / "stripe_events" / "invoice_payment.paid.json").read_text())
    event["id"] = event_id
    return event


def test_refund_names_the_invoice_in_older_api_versions(stripe_customer, packs, deliver):
    """Before 2025-03-31 a Charge carries `invoice`: the refund finds the invoice's grants by it."""
    deliver(stripe_event("invoice.paid.legacy-2024-06-20", event_id="evt_inv_legacy"))
    assert credits_balance(customer=stripe_customer) == 600
    stored = deliver(
        stripe_event(
            "charge.refunded",
            event_id="evt_ref_legacy",
            invoice=INVOICE,
            payment_intent="pi_3PaydeskPayment0001",
            amount_refunded=1500,
            refunded=True,
        )
    )
    assert stored.status == "processed"
    assert credits_balance(customer=stripe_customer) == 0
    assert sorted(Revocation.objects.values_list("requested", "revoked")) == [(100, 100), (500, 500)]


@pytest.mark.parametrize("payment_first", [False, True])
def test_refund_of_an_invoice_in_current_api_versions_goes_through_its_invoice_payment(
    stripe_customer, packs, deliver, payment_first
):
    """Current versions: invoice.paid names no payment, charge.refunded no invoice; the
    invoice_payment.paid between them (in either order) links the two."""
    invoice, payment = stripe_event("invoice.paid", event_id="evt_inv_now"), invoice_payment_event()
    first, second = (payment, invoice) if payment_first else (invoice, payment)
    assert deliver(first).status == ("ignored" if payment_first else "processed")
    assert deliver(second).status == "processed"
    assert credits_balance(customer=stripe_customer) == 600

    stored = deliver(stripe_event("charge.refunded", event_id="evt_ref_now"))  # 500 of 1500 refunded
    assert stored.status == "processed"
    assert sorted(Revocation.objects.values_list("requested", flat=True)) == [100 * 500 // 1500, 500 * 500 // 1500]
    assert credits_balance(customer=stripe_customer) == 600 - 33 - 166


def test_invoice_payment_of_an_invoice_that_bought_no_credits_is_ignored_but_kept(deliver):
    stored = deliver(invoice_payment_event())
    assert stored.status == "ignored" and INVOICE in stored.last_error
    assert StripeInvoicePayment.objects.get().payment_intent == "pi_3PaydeskPayment0001"


# --- Invoices longer than the event ---------------------------------------------------------


def test_an_invoice_with_more_lines_than_the_event_grants_nothing_and_fails_visibly(
    stripe_customer, packs, deliver, admin_client
):
    event = stripe_event("invoice.paid", event_id="evt_inv_long")
    event["data"]["object"]["lines"]["has_more"] = True
    stored = deliver(event)
    assert stored.status == "failed"
    assert "lines.has_more" in stored.last_error and "nothing was granted" in stored.last_error
    assert not Grant.objects.exists() and credits_balance(customer=stripe_customer) == 0
    listing = admin_client.get("/admin/webhooks/inboundevent/?status=failed")
    assert b"evt_inv_long" in listing.content


def test_an_invoice_longer_than_the_event_with_no_pack_in_sight_says_so(stripe_customer, deliver):
    event = stripe_event("invoice.paid", event_id="evt_inv_long_unknown")
    event["data"]["object"]["lines"]["has_more"] = True
    stored = deliver(event)
    assert stored.status == "ignored" and "lines.has_more" in stored.last_error
