"""The stripe provider's Checkout path and the generic http provider, each against a
fake far end at the HTTP layer (recorded real-shaped Stripe JSON for Checkout)."""

import json
from datetime import timedelta

import pytest
from django.utils import timezone

from payments.models import Payment
from payments.services import payments_reconcile
from payments.tests.fake_http import FakeHTTP
from webhooks.tests.support import EVENTS_DIR, signed_post

pytestmark = pytest.mark.django_db


@pytest.fixture
def fake():
    servers = []

    def make(routes):
        server = FakeHTTP(routes)
        servers.append(server)
        return server

    yield make
    for s in servers:
        s.close()


def recorded_session(**over) -> dict:
    session = json.loads((EVENTS_DIR / "checkout.session.completed.json").read_text())["data"]["object"]
    session.update(
        {"status": "open", "payment_status": "unpaid", "url": "https://checkout.stripe.com/c/pay/cs_1", **over}
    )
    return session


def test_stripe_checkout_session_when_a_return_url_is_given(merchant_api, settings, fake):
    server = fake({("POST", "/v1/checkout/sessions"): (200, recorded_session(id="cs_test_rec_1"))})
    settings.STRIPE_SECRET_KEY = "sk_test_" + "y" * 24
    settings.STRIPE_API_BASE = server.url
    response = merchant_api.post(
        "/api/v1/payments",
        {
            "order_id": "co-1",
            "amount": 1000,
            "currency": "usd",
            "provider": "stripe",
            "return_url": "https://shop.example/done",
            "description": "Pack",
        },
        format="json",
    )
    assert response.status_code == 201, response.content
    body = response.json()
    assert body["provider_payment_id"] == "cs_test_rec_1"
    assert body["payment_url"] == "https://checkout.stripe.com/c/pay/cs_1"
    sent = server.requests[0]
    assert sent["headers"]["Idempotency-Key"] == f"pay-{body['id']}"
    assert sent["body"]["metadata[paydesk_payment]"] == [body["id"]]
    assert sent["body"]["line_items[0][price_data][unit_amount]"] == ["1000"]
    assert sent["body"]["success_url"] == ["https://shop.example/done"]


@pytest.mark.parametrize(
    "status,error,reason",
    [
        (
            400,
            {"type": "invalid_request_error", "code": "parameter_invalid", "message": "No such customer: 'cus_Secret'"},
            "stripe: The payment provider refused the request (parameter_invalid).",
        ),
        (
            401,
            {"type": "invalid_request_error", "message": "Invalid API Key provided: sk_test_****yyyy"},
            "stripe: The payment provider refused Paydesk's credentials.",
        ),
        (
            500,
            {"type": "api_error", "message": "Internal error on host api-17"},
            "stripe: The payment provider answered 500.",
        ),
    ],
)
def test_stripe_error_answer_fails_the_payment_with_a_clean_reason(merchant_api, settings, fake, status, error, reason):
    server = fake({("POST", "/v1/payment_intents"): (status, {"error": error})})
    settings.STRIPE_SECRET_KEY = "sk_test_" + "y" * 24
    settings.STRIPE_API_BASE = server.url
    response = merchant_api.post(
        "/api/v1/payments", {"order_id": "x", "amount": 1000, "currency": "usd", "provider": "stripe"}, format="json"
    )
    assert response.status_code == 502
    assert response.json()["error"]["message"] == f"The payment provider failed: {reason}"
    payment = Payment.objects.get()
    assert payment.failure_reason == reason
    # Stripe's own words are kept for staff, in the timeline, and never shown in tracking.
    assert error["message"] in payment.timeline.last().data["internal_detail"]
    tracking = merchant_api.get(f"/api/v1/payments/{payment.pk}/tracking").json()
    assert error["message"] not in json.dumps(tracking)


def test_stripe_unreachable_is_a_clean_reason(merchant_api, settings):
    settings.STRIPE_SECRET_KEY = "sk_test_" + "y" * 24
    settings.STRIPE_API_BASE = "http://127.0.0.1:9"  # connection refused
    response = merchant_api.post(
        "/api/v1/payments", {"order_id": "x", "amount": 1000, "currency": "usd", "provider": "stripe"}, format="json"
    )
    assert response.status_code == 502
    payment = Payment.objects.get()
    assert payment.failure_reason == "stripe: The payment provider could not be reached."
    assert "127.0.0.1" not in response.json()["error"]["message"]
    assert "APIConnectionError" in payment.timeline.last().data["internal_detail"]


class TestHttpProvider:
    def test_create_notify_and_reconcile(self, merchant_api, settings, fake, api, django_capture_on_commit_callbacks):
        ids = iter(["hp_1", "hp_2"])

        def create_link(request):
            link_id = next(ids)
            return 201, {"id": link_id, "payment_url": f"https://pay.example/{link_id}"}

        server = fake({("POST", "/payments"): create_link, ("GET", "/payments/hp_2"): (200, {"status": "failed"})})
        settings.HTTP_PROVIDER_URL = server.url
        settings.HTTP_WEBHOOK_SECRET = "http_secret"
        first = merchant_api.post(
            "/api/v1/payments", {"order_id": "h-1", "amount": 700, "currency": "gbp", "provider": "http"}, format="json"
        ).json()
        assert first["payment_url"] == "https://pay.example/hp_1" and first["provider"] == "http"
        sent = server.requests[0]
        assert sent["body"]["amount"] == 700 and sent["body"]["notify_url"].endswith("/api/v1/payments/webhook")
        assert sent["headers"]["Idempotency-Key"] == f"pay-{first['id']}"

        # Its notification, signed with HTTP_WEBHOOK_SECRET, settles the payment.
        with django_capture_on_commit_callbacks(execute=True):
            response = signed_post(
                api,
                "/api/v1/payments/webhook",
                {"provider": "http", "provider_payment_id": "hp_1", "status": "paid", "amount": 700, "currency": "gbp"},
                secret="http_secret",
                header="X-Paydesk-Signature",
            )
        assert response.status_code == 200
        assert Payment.objects.get(pk=first["id"]).status == "succeeded"

        second = merchant_api.post(
            "/api/v1/payments", {"order_id": "h-2", "amount": 700, "currency": "gbp", "provider": "http"}, format="json"
        ).json()
        assert second["provider_payment_id"] == "hp_2"
        assert payments_reconcile(now=timezone.now() + timedelta(hours=1)) == {"failed": 1}
        assert Payment.objects.get(pk=second["id"]).status == "failed"

    def test_a_provider_reusing_an_id_fails_the_payment_not_the_server(self, merchant_api, settings, fake):
        server = fake({("POST", "/payments"): (201, {"id": "same", "payment_url": "https://pay.example/same"})})
        settings.HTTP_PROVIDER_URL = server.url
        body = {"amount": 700, "currency": "gbp", "provider": "http"}
        assert merchant_api.post("/api/v1/payments", {**body, "order_id": "a"}, format="json").status_code == 201
        second = merchant_api.post("/api/v1/payments", {**body, "order_id": "b"}, format="json")
        assert second.status_code == 502
        assert "already used" in Payment.objects.get(order_id="b").failure_reason
