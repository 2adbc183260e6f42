"""Khalti KPG-2: whole payments against a local fake of Khalti (fake_wallets.FakeKhalti)
answering with the docs' shapes: initiate, the payer's return, the lookup that alone
decides, reconciliation, refunds, and Khalti down or slow."""

import time
from datetime import timedelta
from urllib.parse import parse_qsl, urlencode, urlsplit

import pytest
from django.test import Client
from django.utils import timezone

from payments.models import Payment, Refund
from payments.providers import khalti
from payments.services import payments_reconcile, refunds_resolve_pending
from payments.tests.fake_wallets import PAYLOADS, payload
from wallets.models import Account
from wallets.selectors import ledger_audit

pytestmark = pytest.mark.django_db


def create(merchant_api, **over):
    body = {
        "order_id": "k-1",
        "amount": 10000,
        "currency": "npr",
        "provider": "khalti",
        "return_url": "https://shop.example/thanks?order=k-1",
        "description": "Thangka, small",
        **over,
    }
    return merchant_api.post("/api/v1/payments", body, format="json")


def back_from_khalti(url: str, browser: Client | None = None):
    parts = urlsplit(url)
    return (browser or Client()).get(parts.path + "?" + parts.query)


def lookups(fake) -> list[dict]:
    return fake.calls(fake.LOOKUP)


def balance(merchant) -> int:
    account = Account.objects.filter(merchant=merchant, kind="merchant_balance", currency="npr").first()
    return account.balance if account else 0


def paid(merchant_api, khalti_fake, **over) -> dict:
    payment = create(merchant_api, **over).json()
    back_from_khalti(khalti_fake.pay(payment["provider_payment_id"]))
    assert Payment.objects.get(pk=payment["id"]).status == "succeeded"
    return payment


def test_initiate_then_the_return_and_the_lookup_settle_it(merchant, merchant_api, khalti_fake):
    response = create(merchant_api)
    assert response.status_code == 201, response.content
    payment = response.json()
    [initiate] = khalti_fake.calls(khalti_fake.INITIATE)
    assert initiate["headers"]["Authorization"] == f"Key {khalti_fake.secret}"
    assert initiate["body"] == {
        "return_url": f"http://127.0.0.1:8000/pay/khalti/{payment['id']}/return",
        "website_url": "https://shop.example",
        "amount": 10000,  # paisa, an integer
        "purchase_order_id": payment["id"],
        "purchase_order_name": "Thangka, small",
    }
    pidx = payment["provider_payment_id"]
    assert pidx in khalti_fake.payments and payment["payment_url"] == f"{khalti_fake.url}/?pidx={pidx}"

    done = back_from_khalti(khalti_fake.pay(pidx))

    assert done.status_code == 302 and done["Location"] == "https://shop.example/thanks?order=k-1"
    row = Payment.objects.get(pk=payment["id"])
    assert row.status == "succeeded"
    [lookup] = lookups(khalti_fake)
    assert lookup["body"] == {"pidx": pidx} and lookup["headers"]["Authorization"] == f"Key {khalti_fake.secret}"
    event = row.timeline.get(type="payment.succeeded")
    assert (event.source, event.data["trigger"], event.data["khalti_status"]) == (
        "reconciliation",
        "khalti_return",
        "Completed",
    )
    assert balance(merchant) == 10000 and ledger_audit()["ok"]


def test_the_return_status_is_a_hint_only_the_lookup_decides(merchant_api, khalti_fake):
    payment = create(merchant_api).json()
    pidx = payment["provider_payment_id"]
    # The docs' success callback, but Khalti has not been paid (its lookup: Initiated).
    recorded = dict(parse_qsl((PAYLOADS / "khalti" / "callback_completed.txt").read_text().strip()))
    recorded["pidx"] = pidx
    done = Client().get(f"/pay/khalti/{payment['id']}/return?{urlencode(recorded)}")
    assert done.status_code == 302
    assert Payment.objects.get(pk=payment["id"]).status == "pending"
    assert len(lookups(khalti_fake)) == 1


def test_a_return_with_another_payments_pidx_is_ignored_and_asks_nothing(merchant_api, khalti_fake):
    mine = create(merchant_api, order_id="k-a").json()
    theirs = create(merchant_api, order_id="k-b").json()
    url = khalti_fake.pay(theirs["provider_payment_id"])  # a real, paid pidx, of another payment
    query = urlsplit(url).query
    for forged in (query, "pidx=", "status=Completed", ""):
        assert Client().get(f"/pay/khalti/{mine['id']}/return?{forged}").status_code == 302
    assert Payment.objects.get(pk=mine["id"]).status == "pending"
    assert lookups(khalti_fake) == []


def test_pending_then_completed_through_reconciliation(merchant_api, khalti_fake):
    payment = create(merchant_api).json()
    pidx = payment["provider_payment_id"]
    khalti_fake.set_status(pidx, "Pending")  # Khalti: hold it
    later = timezone.now() + timedelta(minutes=20)
    assert payments_reconcile(now=later) == {"still_pending": 1}
    khalti_fake.pay(pidx)  # the payer never comes back to Paydesk
    assert payments_reconcile(now=later) == {"succeeded": 1}
    assert Payment.objects.get(pk=payment["id"]).status == "succeeded"
    assert len(lookups(khalti_fake)) == 2


@pytest.mark.parametrize(
    "khalti_status,status", [("User canceled", "canceled"), ("Expired", "expired"), ("Failed", "failed")]
)
def test_lookups_answered_with_400_still_settle_it(merchant_api, khalti_fake, khalti_status, status):
    """The docs: the lookup answers Expired and User canceled with HTTP 400, and its body."""
    payment = create(merchant_api).json()
    khalti_fake.set_status(payment["provider_payment_id"], khalti_status)
    query = urlencode({"pidx": payment["provider_payment_id"], "status": khalti_status})
    assert Client().get(f"/pay/khalti/{payment['id']}/return?{query}").status_code == 302
    row = Payment.objects.get(pk=payment["id"])
    assert row.status == status and row.failure_reason == f"Khalti: {khalti_status}"


def test_a_lookup_for_another_amount_is_flagged_not_paid(merchant_api, khalti_fake):
    payment = create(merchant_api).json()
    url = khalti_fake.pay(payment["provider_payment_id"])
    khalti_fake.payments[payment["provider_payment_id"]]["total_amount"] = 1000
    back_from_khalti(url)
    row = Payment.objects.get(pk=payment["id"])
    assert row.status == "pending" and row.timeline.get(type="provider.mismatch").flagged


def test_an_unknown_lookup_status_is_held(merchant_api, khalti_fake):
    payment = create(merchant_api).json()
    khalti_fake.set_status(payment["provider_payment_id"], "Ambiguous")
    assert payments_reconcile(now=timezone.now() + timedelta(minutes=20)) == {"still_pending": 1}


def test_refunded_at_khalti_before_paydesk_heard_of_it_is_booked_then_refunded(merchant, merchant_api, khalti_fake):
    payment = create(merchant_api).json()
    khalti_fake.pay(payment["provider_payment_id"])
    khalti_fake.set_status(payment["provider_payment_id"], "Refunded")
    assert payments_reconcile(now=timezone.now() + timedelta(minutes=20)) == {"succeeded": 1}
    row = Payment.objects.get(pk=payment["id"])
    assert (row.status, row.amount_refunded) == ("refunded", 10000)
    assert balance(merchant) == 0 and ledger_audit()["ok"]


# --- Khalti down, slow, or refusing ----------------------------------------------------------


@pytest.mark.parametrize(
    "fail,reason",
    [
        pytest.param((503, "<html>503 Service Unavailable</html>"), "khalti: Khalti answered 503.", id="503"),
        pytest.param((500, {"detail": "Server error"}), "khalti: Khalti answered 500.", id="500"),
        pytest.param(
            (401, payload("khalti/error_invalid_token")),
            "khalti: Khalti refused Paydesk's credentials (KHALTI_SECRET_KEY).",
            id="401",
        ),
        pytest.param(
            (400, payload("khalti/error_amount_too_small")), "khalti: Khalti refused the payment (amount).", id="400"
        ),
    ],
)
def test_khalti_failing_the_initiate_fails_the_payment_with_502(merchant_api, khalti_fake, fail, reason):
    khalti_fake.down = fail
    response = create(merchant_api)
    assert response.status_code == 502, response.content
    assert response.json()["error"]["type"] == "provider_error"
    row = Payment.objects.get()
    assert (row.status, row.failure_reason) == ("failed", reason)
    assert "validation_error" not in row.failure_reason and "Invalid token" not in row.failure_reason
    # What Khalti actually said is for staff only (the timeline's internal detail).
    assert "HTTP" in row.timeline.get(type="payment.failed").data["internal_detail"]


def test_a_slow_initiate_times_out_fails_the_payment_and_502(merchant_api, khalti_fake, monkeypatch):
    monkeypatch.setattr(khalti, "TIMEOUT_SECONDS", 0.3)
    khalti_fake.delay = 3
    started = time.monotonic()
    response = create(merchant_api)
    assert time.monotonic() - started < 2
    assert response.status_code == 502
    row = Payment.objects.get()
    assert row.failure_reason == "khalti: The payment provider could not be reached (timeout)."


def test_a_wrong_secret_key_is_refused_by_khalti(merchant_api, khalti_fake, settings):
    settings.KHALTI_SECRET_KEY = "test_secret_key_wrong"
    response = create(merchant_api)
    assert response.status_code == 502
    assert "credentials" in Payment.objects.get().failure_reason


def test_khalti_down_at_the_return_leaves_it_pending_for_reconciliation(merchant_api, khalti_fake, monkeypatch):
    monkeypatch.setattr(khalti, "TIMEOUT_SECONDS", 0.3)
    payment = create(merchant_api).json()
    url = khalti_fake.pay(payment["provider_payment_id"])
    khalti_fake.down = (503, "<html>down</html>")
    assert back_from_khalti(url).status_code == 302
    khalti_fake.down, khalti_fake.delay = None, 3
    assert back_from_khalti(url).status_code == 302  # and a slow one times out
    assert Payment.objects.get(pk=payment["id"]).status == "pending"
    khalti_fake.delay = 0
    assert payments_reconcile(now=timezone.now() + timedelta(minutes=20)) == {"succeeded": 1}


# --- Cancel and refunds ----------------------------------------------------------------------


def test_cancel_asks_nothing_and_a_payment_made_anyway_is_booked_and_refunded_at_khalti(
    merchant, merchant_api, khalti_fake, django_capture_on_commit_callbacks
):
    payment = create(merchant_api).json()
    pidx = payment["provider_payment_id"]
    response = merchant_api.post(f"/api/v1/payments/{payment['id']}/cancel")
    assert response.status_code == 200 and response.json()["status"] == "canceled"
    assert [r["path"] for r in khalti_fake.requests] == [khalti_fake.INITIATE]  # KPG-2 has no cancel API
    with django_capture_on_commit_callbacks(execute=True):
        back_from_khalti(khalti_fake.pay(pidx))  # the payer had the link open
    row = Payment.objects.get(pk=payment["id"])
    assert (row.status, row.amount_refunded) == ("canceled", 10000)
    assert row.timeline.get(type="provider.late_succeeded").flagged
    assert khalti_fake.payments[pidx]["status"] == "Refunded"
    assert Refund.objects.get(payment_id=payment["id"]).status == "succeeded"
    assert balance(merchant) == 0 and ledger_audit()["ok"]


def test_full_and_partial_refunds(merchant, merchant_api, khalti_fake):
    payment = paid(merchant_api, khalti_fake)
    pidx = payment["provider_payment_id"]
    first = merchant_api.post(f"/api/v1/payments/{payment['id']}/refunds", {"amount": 4000}, format="json")
    assert first.status_code == 201 and first.json()["status"] == "succeeded"
    rest = merchant_api.post(f"/api/v1/payments/{payment['id']}/refunds", {}, format="json")
    assert rest.status_code == 201 and rest.json()["amount"] == 6000
    sent = [r["body"] for r in khalti_fake.calls(khalti_fake.REFUND)]
    txn = khalti_fake.payments[pidx]["transaction_id"]
    assert [r["path"] for r in khalti_fake.calls(khalti_fake.REFUND)] == [
        f"/api/merchant-transaction/{txn}/refund/"
    ] * 2
    assert sent == [{"amount": 4000}, {"amount": 6000}]  # partial, then what is left
    assert khalti_fake.payments[pidx]["status"] == "Refunded"
    row = Payment.objects.get(pk=payment["id"])
    assert (row.status, row.amount_refunded) == ("refunded", 10000)
    assert balance(merchant) == 0 and ledger_audit()["ok"]


def test_a_full_refund_sends_no_amount(merchant_api, khalti_fake):
    payment = paid(merchant_api, khalti_fake)
    assert merchant_api.post(f"/api/v1/payments/{payment['id']}/refunds", {}, format="json").status_code == 201
    assert [r["body"] for r in khalti_fake.calls(khalti_fake.REFUND)] == [{}]


def test_a_refund_khalti_refuses_is_a_502_and_undone(merchant, merchant_api, khalti_fake):
    payment = paid(merchant_api, khalti_fake)
    khalti_fake.fail_next[khalti_fake.REFUND] = [
        (400, {"detail": "Refund not allowed.", "error_key": "validation_error"})
    ]
    response = merchant_api.post(f"/api/v1/payments/{payment['id']}/refunds", {"amount": 4000}, format="json")
    assert response.status_code == 502, response.content
    assert Refund.objects.get(payment_id=payment["id"]).status == "failed"
    row = Payment.objects.get(pk=payment["id"])
    assert (row.status, row.amount_refunded) == ("succeeded", 0)
    assert balance(merchant) == 10000 and ledger_audit()["ok"]


def test_a_refund_that_timed_out_but_went_through_is_not_sent_twice(merchant, merchant_api, khalti_fake, monkeypatch):
    """Khalti's refund takes no idempotency key: the retry looks the payment up first."""
    monkeypatch.setattr(khalti, "TIMEOUT_SECONDS", 0.5)
    payment = paid(merchant_api, khalti_fake)
    khalti_fake.slow = {khalti_fake.REFUND: 1.5}  # answers too late, but refunds all the same
    response = merchant_api.post(f"/api/v1/payments/{payment['id']}/refunds", {"amount": 4000}, format="json")
    assert response.status_code == 201 and response.json()["status"] == "pending"
    time.sleep(1.5)
    assert khalti_fake.payments[payment["provider_payment_id"]]["status"] == "Partially Refunded"
    khalti_fake.slow = {}
    assert refunds_resolve_pending(now=timezone.now() + timedelta(minutes=5)) == 1
    assert Refund.objects.get(payment_id=payment["id"]).status == "succeeded"
    assert len(khalti_fake.calls(khalti_fake.REFUND)) == 1  # sent once
    assert khalti_fake.payments[payment["provider_payment_id"]]["refunded_amount"] == 4000
    row = Payment.objects.get(pk=payment["id"])
    assert (row.status, row.amount_refunded) == ("partially_refunded", 4000)
    assert ledger_audit()["ok"]


# --- What Khalti can never take ---------------------------------------------------------------


@pytest.mark.parametrize("over,param", [({"amount": 999}, "amount"), ({"currency": "usd"}, "currency")])
def test_refused_before_anything_is_created(merchant_api, khalti_fake, over, param):
    response = create(merchant_api, **over)
    assert response.status_code == 400 and response.json()["error"]["param"] == param
    assert not Payment.objects.exists() and khalti_fake.requests == []


def test_off_without_a_secret_key(merchant_api, settings):
    settings.KHALTI_SECRET_KEY = ""
    response = create(merchant_api)
    assert response.status_code == 400 and response.json()["error"]["param"] == "provider"


def test_the_return_page_of_another_providers_payment_is_404(merchant_api, settings):
    settings.MOCK_PROVIDER_ENABLED = True
    other = merchant_api.post(
        "/api/v1/payments", {"order_id": "m-1", "amount": 1000, "currency": "npr", "provider": "mock"}, format="json"
    ).json()
    assert Client().get(f"/pay/khalti/{other['id']}/return?pidx=x").status_code == 404


def test_without_a_return_url_the_payer_sees_the_status(merchant_api, khalti_fake):
    payment = create(merchant_api, return_url="").json()
    assert khalti_fake.calls(khalti_fake.INITIATE)[0]["body"]["website_url"] == "http://127.0.0.1:8000"
    page = back_from_khalti(khalti_fake.pay(payment["provider_payment_id"]))
    assert page.status_code == 200 and "succeeded" in page.content.decode()
