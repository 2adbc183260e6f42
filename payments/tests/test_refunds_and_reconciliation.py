import threading
from datetime import timedelta

import pytest
from django.db import connection
from django.utils import timezone

from payments.models import MockCheckout, Payment, Refund
from payments.services import payment_create, payment_settle_from_provider, payments_reconcile
from wallets.models import Account
from wallets.selectors import ledger_audit

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("shards")]


def succeeded_payment(merchant, amount=1000, order_id="o-1"):
    payment = payment_create(merchant=merchant, order_id=order_id, amount=amount, currency="usd")
    payment_settle_from_provider(
        payment_id=payment.pk, outcome="succeeded", amount=amount, currency="usd", source="provider_webhook", data={}
    )
    payment.refresh_from_db()
    return payment


@pytest.fixture
def http_provider(settings):
    from payments.tests.fake_http import FakeHTTP

    server = FakeHTTP({("POST", "/payments"): (200, {"id": "p_1", "payment_url": "https://pay.example/p_1"})})
    settings.HTTP_PROVIDER_URL = server.url
    yield server
    server.close()


def succeeded_http_payment(merchant):
    payment = payment_create(merchant=merchant, order_id="o-h", amount=1000, currency="usd", provider="http")
    payment_settle_from_provider(
        payment_id=payment.pk, outcome="succeeded", amount=1000, currency="usd", source="api", data={}
    )
    payment.refresh_from_db()
    return payment


class TestRefunds:
    def test_partial_then_rest(self, merchant, merchant_api):
        payment = succeeded_payment(merchant)
        first = merchant_api.post(
            f"/api/v1/payments/{payment.pk}/refunds", {"amount": 300, "reason": "damaged"}, format="json"
        )
        assert first.status_code == 201 and first.json()["status"] == "succeeded"
        payment.refresh_from_db()
        assert (payment.status, payment.amount_refunded) == ("partially_refunded", 300)
        rest = merchant_api.post(f"/api/v1/payments/{payment.pk}/refunds", {}, format="json")
        assert rest.json()["amount"] == 700
        payment.refresh_from_db()
        assert (payment.status, payment.amount_refunded) == ("refunded", 1000)

    def test_never_more_than_what_is_left(self, merchant, merchant_api):
        payment = succeeded_payment(merchant)
        merchant_api.post(f"/api/v1/payments/{payment.pk}/refunds", {"amount": 600}, format="json")
        too_much = merchant_api.post(f"/api/v1/payments/{payment.pk}/refunds", {"amount": 401}, format="json")
        assert too_much.status_code == 400 and too_much.json()["error"]["param"] == "amount"
        payment.refresh_from_db()
        assert payment.amount_refunded == 600 and payment.refunds.count() == 1

    @pytest.mark.parametrize("reason", [42, True, ["damaged"], {"why": "damaged"}])
    def test_a_reason_that_is_not_a_string_is_400_naming_it(self, merchant, merchant_api, reason):
        payment = succeeded_payment(merchant)
        response = merchant_api.post(f"/api/v1/payments/{payment.pk}/refunds", {"reason": reason}, format="json")
        assert response.status_code == 400 and response.json()["error"]["param"] == "reason"
        assert not Refund.objects.exists()

    def test_pending_payment_cannot_be_refunded(self, merchant, merchant_api):
        payment = payment_create(merchant=merchant, order_id="o-2", amount=1000, currency="usd")
        response = merchant_api.post(f"/api/v1/payments/{payment.pk}/refunds", {}, format="json")
        assert response.status_code == 409

    def test_a_refused_provider_refund_releases_the_amount(self, merchant, merchant_api, http_provider):
        http_provider.routes[("POST", "/payments/p_1/refunds")] = (400, {"error": "charge too old"})
        payment = succeeded_http_payment(merchant)
        response = merchant_api.post(f"/api/v1/payments/{payment.pk}/refunds", {"amount": 100}, format="json")
        assert response.status_code == 502
        # The provider's own answer is for staff (timeline), not the merchant's message.
        message = "The provider could not refund: The payment provider refused the request (400)."
        assert response.json()["error"]["message"] == message
        assert "charge too old" in payment.timeline.get(type="refund.failed").data["internal_detail"]
        payment.refresh_from_db()
        assert payment.amount_refunded == 0 and payment.status == "succeeded"
        assert Refund.objects.get().status == "failed"
        assert ledger_audit()["ok"]
        merchant_balance = Account.objects.get(merchant=merchant, kind="merchant_balance")
        assert merchant_balance.balance == 1000  # booked out for the refund, then back

    def test_an_unreachable_provider_leaves_the_refund_pending_and_it_is_asked_again(
        self, merchant, merchant_api, http_provider
    ):
        from payments.services import refunds_resolve_pending

        http_provider.routes[("POST", "/payments/p_1/refunds")] = (503, {"error": "down"})
        payment = succeeded_http_payment(merchant)
        response = merchant_api.post(f"/api/v1/payments/{payment.pk}/refunds", {"amount": 100}, format="json")
        assert response.status_code == 201 and response.json()["status"] == "pending"
        assert Refund.objects.get().failure_reason == "retrying: The payment provider answered 503."
        payment.refresh_from_db()
        assert payment.amount_refunded == 100  # reserved: it may have gone through
        assert refunds_resolve_pending(now=timezone.now() + timedelta(minutes=2)) == 1  # still down
        http_provider.routes[("POST", "/payments/p_1/refunds")] = (200, {"id": "re_1", "status": "succeeded"})
        assert refunds_resolve_pending(now=timezone.now() + timedelta(minutes=10)) == 1
        refund = Refund.objects.get()
        assert (refund.status, refund.provider_refund_id) == ("succeeded", "re_1")
        keys = {r["headers"]["Idempotency-Key"] for r in http_provider.requests if r["path"].endswith("/refunds")}
        assert keys == {f"re-{refund.pk}"}  # asked three times, one key: refunded once
        payment.refresh_from_db()
        assert payment.status == "partially_refunded"
        assert ledger_audit()["ok"]


class TestReconciliation:
    def test_stuck_payment_is_settled_from_the_provider(self, merchant):
        payment = payment_create(merchant=merchant, order_id="o-1", amount=1000, currency="usd")
        MockCheckout.objects.filter(payment=payment).update(status="paid")  # paid, but the webhook never came
        assert payments_reconcile() == {}  # not old enough yet
        later = timezone.now() + timedelta(minutes=20)
        assert payments_reconcile(now=later) == {"succeeded": 1}
        payment.refresh_from_db()
        assert payment.status == "succeeded"
        assert payment.timeline.get(type="payment.succeeded").source == "reconciliation"
        assert payments_reconcile(now=later) == {}  # nothing pending left

    def test_long_pending_payment_expires(self, merchant):
        payment = payment_create(merchant=merchant, order_id="o-1", amount=1000, currency="usd")
        assert payments_reconcile(now=timezone.now() + timedelta(minutes=20)) == {"still_pending": 1}
        assert payments_reconcile(now=timezone.now() + timedelta(days=2)) == {"expired": 1}
        payment.refresh_from_db()
        assert payment.status == "expired"

    def test_command(self, merchant):
        from io import StringIO

        from django.core.management import call_command

        payment = payment_create(merchant=merchant, order_id="o-1", amount=1000, currency="usd")
        MockCheckout.objects.filter(payment=payment).update(status="failed")
        out = StringIO()
        call_command("audit_payments", "--now", (timezone.now() + timedelta(hours=1)).isoformat(), stdout=out)
        assert "failed: 1" in out.getvalue()


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_two_reconciliations_at_once_ask_about_and_settle_each_payment_once(merchant, settings):
    from payments.tests.fake_http import FakeHTTP

    server = FakeHTTP({})
    settings.HTTP_PROVIDER_URL = server.url
    for i in range(30):
        server.routes[("POST", "/payments")] = (200, {"id": f"p_{i}", "payment_url": f"https://pay.example/{i}"})
        server.routes[("GET", f"/payments/p_{i}")] = (200, {"status": "paid"})
        payment_create(merchant=merchant, order_id=f"o-{i}", amount=100, currency="usd", provider="http")
    later = timezone.now() + timedelta(hours=1)
    results, barrier = [], threading.Barrier(2)

    def run():
        barrier.wait()
        try:
            results.append(payments_reconcile(now=later, limit=10))
            results.append(payments_reconcile(now=later, limit=100))
        finally:
            connection.close()

    threads = [threading.Thread(target=run) for _ in range(2)]
    try:
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    finally:
        server.close()
    asked = [r["path"] for r in server.requests if r["method"] == "GET"]
    assert sorted(asked) == sorted(f"/payments/p_{i}" for i in range(30))  # each payment asked about once
    assert sum(r.get("succeeded", 0) for r in results) == 30
    assert set(Payment.objects.values_list("status", flat=True)) == {"succeeded"}
    for payment in Payment.objects.all():
        assert payment.timeline.filter(type="payment.succeeded").count() == 1
    assert ledger_audit()["ok"]
