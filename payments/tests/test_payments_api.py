import threading

import pytest
from django.db import connection
from rest_framework.test import APIClient

from payments.identity.models import Subscription
from payments.identity.services import api_key_create
from payments.models import Payment
from payments.tests.factories import CustomerFactory, MerchantFactory
from webhooks.models import OutboundEvent

pytestmark = pytest.mark.django_db
URL = "/api/v1/payments"


def body(**over):
    return {"order_id": "ord-1", "amount": 1000, "currency": "USD", **over}


def tokens(merchant) -> int:
    return Subscription.objects.get(merchant=merchant).tokens_remaining


def test_create_returns_a_pending_mock_payment_with_a_checkout_url(merchant_api, merchant, customer):
    response = merchant_api.post(
        URL, body(customer=str(customer.pk), description="Shoes", metadata={"k": "v"}), format="json"
    )
    assert response.status_code == 201, response.content
    data = response.json()
    assert data["status"] == "pending" and data["currency"] == "usd" and data["amount"] == 1000
    assert data["provider"] == "mock" and data["provider_payment_id"].startswith("mock_")
    assert data["payment_url"].endswith(f"/pay/mock/{data['id']}")
    assert data["client_secret"] is None and data["customer"] == str(customer.pk)
    assert tokens(merchant) == 9_999


def test_idempotent_replay_creates_nothing_and_consumes_no_token(merchant_api, merchant):
    first = merchant_api.post(URL, body(), format="json", HTTP_IDEMPOTENCY_KEY="pay-1")
    again = merchant_api.post(URL, body(), format="json", HTTP_IDEMPOTENCY_KEY="pay-1")
    assert again.status_code == 201 and again["Idempotent-Replayed"] == "true"
    assert again.json() == first.json()
    assert Payment.objects.count() == 1 and tokens(merchant) == 9_999


def test_validation_failure_consumes_no_token(merchant_api, merchant):
    for bad in [
        body(amount=10.5),
        body(currency="xyz"),
        body(order_id=""),
        body(split_instructions=[{"destination": "a", "amount": 2000}]),
    ]:
        assert merchant_api.post(URL, bad, format="json").status_code == 400
    assert tokens(merchant) == 10_000 and not Payment.objects.exists()


@pytest.mark.parametrize("field", ["order_id", "provider", "description"])
@pytest.mark.parametrize("value", [123, 1.5, True, ["x"], {"x": 1}])
def test_a_string_field_given_another_type_is_400_naming_it(merchant_api, merchant, field, value):
    response = merchant_api.post(URL, body(**{field: value}), format="json")
    assert response.status_code == 400, response.content
    assert response.json()["error"]["param"] == field
    assert tokens(merchant) == 10_000 and not Payment.objects.exists()


def test_customer_string_fields_are_strict_too(merchant_api):
    for field in ["external_id", "name"]:
        response = merchant_api.post("/api/v1/customers", {"external_id": "c-1", field: 7}, format="json")
        assert response.status_code == 400 and response.json()["error"]["param"] == field


def test_second_pending_payment_for_an_order_is_409_and_keeps_the_token(merchant_api, merchant):
    assert merchant_api.post(URL, body(), format="json").status_code == 201
    second = merchant_api.post(URL, body(amount=500), format="json")
    assert second.status_code == 409 and second.json()["error"]["type"] == "conflict"
    assert tokens(merchant) == 9_999
    # Once the first is no longer pending, the order can be paid again.
    first = Payment.objects.get()
    assert merchant_api.post(f"{URL}/{first.pk}/cancel").status_code == 200
    assert merchant_api.post(URL, body(amount=500), format="json").status_code == 201


def test_quota_exhausted_is_402(client_for):
    merchant = MerchantFactory(quota=1)
    api = client_for(merchant)
    assert api.post(URL, body(order_id="a"), format="json").status_code == 201
    response = api.post(URL, body(order_id="b"), format="json")
    assert response.status_code == 402
    assert response.json()["error"] == {
        "type": "payment_error",
        "code": "quota_exceeded",
        "message": response.json()["error"]["message"],
        "param": None,
    }


def test_unknown_or_foreign_customer_is_404_naming_customer(merchant_api):
    other = CustomerFactory(merchant=MerchantFactory())
    response = merchant_api.post(URL, body(customer=str(other.pk)), format="json")
    assert response.status_code == 404 and response.json()["error"]["param"] == "customer"


def test_unknown_provider_is_400(merchant_api):
    response = merchant_api.post(URL, body(provider="paypal"), format="json")
    assert response.status_code == 400 and response.json()["error"]["param"] == "provider"
    response = merchant_api.post(URL, body(provider="stripe"), format="json")  # no STRIPE_SECRET_KEY here
    assert response.status_code == 400 and response.json()["error"]["param"] == "provider"


def test_get_show_list_filters_and_isolation(merchant_api, client_for, customer):
    created = merchant_api.post(URL, body(customer=str(customer.pk)), format="json").json()
    merchant_api.post(URL, body(order_id="ord-2"), format="json")
    assert merchant_api.get(f"{URL}/{created['id']}").json()["id"] == created["id"]
    assert merchant_api.get(f"{URL}/{created['id']}/show").json() == merchant_api.get(f"{URL}/{created['id']}").json()
    assert merchant_api.get(URL).json()["count"] == 2
    assert [p["order_id"] for p in merchant_api.get(f"{URL}?order_id=ord-2").json()["results"]] == ["ord-2"]
    assert merchant_api.get(f"{URL}?customer={customer.pk}").json()["count"] == 1
    assert merchant_api.get(f"{URL}?status=succeeded").json()["count"] == 0
    other = client_for(MerchantFactory())
    assert other.get(f"{URL}/{created['id']}").status_code == 404
    assert other.post(f"{URL}/{created['id']}/cancel").status_code == 404
    assert other.get(URL).json()["count"] == 0


def test_tracking_is_oldest_first(merchant_api):
    created = merchant_api.post(URL, body(), format="json").json()
    merchant_api.post(f"{URL}/{created['id']}/cancel")
    tracking = merchant_api.get(f"{URL}/{created['id']}/tracking").json()
    assert tracking["payment"] == created["id"]
    assert [e["type"] for e in tracking["events"]] == [
        "payment.created",
        "provider.payment_created",
        "payment.canceled",
    ]
    assert tracking["events"][-1]["status"] == "canceled" and tracking["events"][-1]["source"] == "api"


def test_tracking_status_is_null_for_events_that_are_not_state_changes(merchant_api, merchant):
    from payments.services import payment_refund, payment_settle_from_provider

    created = merchant_api.post(URL, body(), format="json").json()
    payment_settle_from_provider(
        payment_id=created["id"], outcome="succeeded", amount=999, currency="usd", source="provider_webhook", data={}
    )  # a mismatch: flagged, nothing changes
    payment_settle_from_provider(
        payment_id=created["id"], outcome="succeeded", amount=1000, currency="usd", source="provider_webhook", data={}
    )
    payment_refund(payment=Payment.objects.get(pk=created["id"]), amount=100)
    events = merchant_api.get(f"{URL}/{created['id']}/tracking").json()["events"]
    assert [(e["type"], e["status"], e["from_status"]) for e in events] == [
        ("payment.created", "pending", None),
        ("provider.payment_created", None, None),
        ("provider.mismatch", None, None),
        ("payment.succeeded", "succeeded", "pending"),
        ("refund.requested", None, None),
        ("payment.partially_refunded", "partially_refunded", "succeeded"),
    ]


def test_tracking_schema_says_status_is_nullable(api):
    schemas = api.get("/api/schema/?format=json").json()["components"]["schemas"]
    event = schemas[schemas["PaymentTracking"]["properties"]["events"]["items"]["$ref"].rsplit("/", 1)[1]]
    assert event["properties"]["status"]["nullable"] is True
    assert event["properties"]["from_status"]["nullable"] is True


@pytest.mark.parametrize("with_key", [False, True])
def test_cancel_with_a_malformed_body_is_400_and_cancels_nothing(merchant_api, with_key):
    created = merchant_api.post(URL, body(), format="json").json()
    headers = {"HTTP_IDEMPOTENCY_KEY": "cancel-1"} if with_key else {}
    for raw in ["{bad", "[1, 2]", '"cancel"']:
        response = merchant_api.post(
            f"{URL}/{created['id']}/cancel", data=raw, content_type="application/json", **headers
        )
        assert response.status_code == 400, (raw, response.content)
        assert response.json()["error"]["type"] == "invalid_request_error"
    assert Payment.objects.get().status == "pending"
    # An empty body, JSON or not, and an empty object still cancel.
    ok = merchant_api.post(f"{URL}/{created['id']}/cancel", data="", content_type="application/json")
    assert ok.status_code == 200 and ok.json()["status"] == "canceled"


def test_cancel_with_an_empty_object_body(merchant_api):
    created = merchant_api.post(URL, body(), format="json").json()
    response = merchant_api.post(f"{URL}/{created['id']}/cancel", {}, format="json")
    assert response.status_code == 200 and response.json()["status"] == "canceled"


def test_cancel_only_pending(merchant_api, merchant):
    created = merchant_api.post(URL, body(), format="json").json()
    assert merchant_api.post(f"{URL}/{created['id']}/cancel").json()["status"] == "canceled"
    again = merchant_api.post(f"{URL}/{created['id']}/cancel")
    assert again.status_code == 409
    assert OutboundEvent.objects.filter(type="payment.canceled").count() == 1


class TestProviderFailure:
    def test_provider_timeout_fails_the_payment_with_502(self, merchant_api, settings):
        import socket

        # A provider that accepts the connection and never answers: the call times out.
        server = socket.socket()
        server.bind(("127.0.0.1", 0))
        server.listen(5)
        settings.HTTP_PROVIDER_URL = f"http://127.0.0.1:{server.getsockname()[1]}"
        settings.HTTP_PROVIDER_TIMEOUT = 0.5
        try:
            response = merchant_api.post(URL, body(provider="http"), format="json")
        finally:
            server.close()
        assert response.status_code == 502
        error = response.json()["error"]
        assert error["type"] == "provider_error"
        # The merchant reads a clean reason; requests' text (host, port, pool) is staff's.
        reason = "http: The payment provider could not be reached (timeout)."
        assert error["message"] == f"The payment provider failed: {reason}"
        payment = Payment.objects.get()
        assert payment.status == "failed" and payment.failure_reason == reason
        assert list(payment.timeline.values_list("type", flat=True)) == ["payment.created", "payment.failed"]
        assert "ReadTimeout: HTTPConnectionPool(host='127.0.0.1'" in payment.timeline.last().data["internal_detail"]
        event = OutboundEvent.objects.get(type="payment.failed")
        assert event.data["failure_reason"] == reason
        tracking = merchant_api.get(f"{URL}/{payment.pk}/tracking").json()
        assert tracking["events"][-1]["data"] == {"stage": "provider_create", "reason": reason}

    def test_provider_refusal_fails_the_payment_with_502(self, merchant_api, settings):
        settings.HTTP_PROVIDER_URL = "http://127.0.0.1:9"  # connection refused
        response = merchant_api.post(URL, body(provider="http"), format="json")
        assert response.status_code == 502
        reason = "http: The payment provider could not be reached (connection failed)."
        assert response.json()["error"]["message"] == f"The payment provider failed: {reason}"
        payment = Payment.objects.get()
        assert payment.status == "failed" and payment.failure_reason == reason
        assert "HTTPConnectionPool" in payment.timeline.last().data["internal_detail"]

    def test_provider_5xx_and_4xx_answers_are_clean(self, merchant_api, settings):
        from payments.tests.fake_http import FakeHTTP

        server = FakeHTTP(
            {
                ("POST", "/payments"): lambda request: (
                    (500, {"trace": "db01.internal:5432 exploded"})
                    if request["body"]["amount"] == 1000
                    else (422, {"error": "merchant acct_9 not allowed"})
                )
            }
        )
        settings.HTTP_PROVIDER_URL = server.url
        try:
            five = merchant_api.post(URL, body(provider="http"), format="json")
            four = merchant_api.post(URL, body(provider="http", order_id="ord-2", amount=999), format="json")
        finally:
            server.close()
        assert (
            five.json()["error"]["message"] == "The payment provider failed: http: The payment provider answered 500."
        )
        assert four.json()["error"]["message"] == (
            "The payment provider failed: http: The payment provider refused the request (422)."
        )
        for order_id, leak in [("ord-1", "db01.internal"), ("ord-2", "acct_9")]:
            payment = Payment.objects.get(order_id=order_id)
            assert leak not in payment.failure_reason and leak in payment.timeline.last().data["internal_detail"]

    def test_an_unexpected_provider_bug_is_not_shown_to_the_merchant(self, merchant_api, monkeypatch):
        from payments.providers.mock import MockProvider

        def broken(self, **kwargs):
            raise KeyError("secret_internal_state")

        monkeypatch.setattr(MockProvider, "create_payment", broken)
        response = merchant_api.post(URL, body(), format="json")
        assert response.status_code == 502
        assert "secret_internal_state" not in response.json()["error"]["message"]
        payment = Payment.objects.get()
        assert payment.failure_reason == "mock: The payment provider failed unexpectedly."
        assert "KeyError: 'secret_internal_state'" in payment.timeline.last().data["internal_detail"]


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_concurrent_creates_for_one_order_give_one_201(merchant):
    _, raw = api_key_create(merchant=merchant)
    codes, barrier = [], threading.Barrier(8)

    def create():
        client = APIClient()
        client.credentials(HTTP_AUTHORIZATION=f"Bearer {raw}")
        barrier.wait()
        try:
            codes.append(client.post(URL, body(), format="json").status_code)
        finally:
            connection.close()

    threads = [threading.Thread(target=create) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(codes) == [201] + [409] * 7
    assert Payment.objects.filter(order_id="ord-1").count() == 1
    assert tokens(merchant) == 9_999  # the 409s took no token


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_exactly_the_quota_is_created_under_concurrency():
    merchant = MerchantFactory(quota=5)
    _, raw = api_key_create(merchant=merchant)
    codes, barrier = [], threading.Barrier(6)

    def create(worker):
        client = APIClient()
        client.credentials(HTTP_AUTHORIZATION=f"Bearer {raw}")
        barrier.wait()
        try:
            for i in range(3):
                codes.append(client.post(URL, body(order_id=f"w{worker}-{i}"), format="json").status_code)
        finally:
            connection.close()

    threads = [threading.Thread(target=create, args=(w,)) for w in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert codes.count(201) == 5 and codes.count(402) == 13
    assert Payment.objects.filter(merchant=merchant).count() == 5 and tokens(merchant) == 0
