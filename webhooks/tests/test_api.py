from unittest import mock

import pytest

from payments.tests.factories import MerchantFactory
from webhooks.models import Delivery, WebhookEndpoint
from webhooks.services import event_emit

pytestmark = pytest.mark.django_db
URL = "/api/v1/webhook-endpoints"


def test_create_shows_the_secret_once(merchant_api, receiver, allow_loopback):
    created = merchant_api.post(
        URL, {"url": receiver.url, "events": ["payment.succeeded", "charge.failed"]}, format="json"
    )
    assert created.status_code == 201
    body = created.json()
    assert body["secret"].startswith("whsec_") and body["enabled"] is True
    assert body["events"] == ["charge.failed", "payment.succeeded"]
    fetched = merchant_api.get(f"{URL}/{body['id']}").json()
    assert "secret" not in fetched
    assert all("secret" not in e for e in merchant_api.get(URL).json()["results"])


def test_delete_deletes_as_stripe_does_and_keeps_the_row(merchant_api, receiver, allow_loopback, merchant):
    endpoint_id = merchant_api.post(URL, {"url": receiver.url, "events": ["*"]}, format="json").json()["id"]
    kept = merchant_api.post(URL, {"url": receiver.url, "events": ["*"]}, format="json").json()["id"]
    with mock.patch("webhooks.tasks.delivery_attempt_task.apply_async"):
        event_emit(merchant=merchant, type="payment.succeeded", data={})  # pending to both
    response = merchant_api.delete(f"{URL}/{endpoint_id}")
    assert response.status_code == 200
    assert response.json() == {"id": endpoint_id, "deleted": True}

    assert merchant_api.get(f"{URL}/{endpoint_id}").status_code == 404
    again = merchant_api.delete(f"{URL}/{endpoint_id}")
    assert again.status_code == 404 and again.json()["error"]["type"] == "not_found"
    assert [e["id"] for e in merchant_api.get(URL).json()["results"]] == [kept]

    endpoint = WebhookEndpoint.objects.get(pk=endpoint_id)  # kept for staff, with its history
    assert endpoint.deleted_at is not None and endpoint.enabled is False
    pending = Delivery.objects.get(endpoint=endpoint)
    assert (pending.status, pending.attempts, pending.last_error) == ("failed", 0, "The endpoint was deleted.")
    assert Delivery.objects.get(endpoint_id=kept).status == "pending"
    event_emit(merchant=merchant, type="payment.succeeded", data={})
    assert Delivery.objects.filter(endpoint=endpoint).count() == 1  # no new deliveries to it
    assert Delivery.objects.filter(endpoint_id=kept).count() == 2


def test_the_delete_response_is_in_the_schema(api):
    spec = api.get("/api/schema/?format=json").json()
    deleted = spec["paths"]["/api/v1/webhook-endpoints/{endpoint_id}"]["delete"]["responses"]["200"]
    ref = deleted["content"]["application/json"]["schema"]["$ref"].rsplit("/", 1)[-1]
    assert set(spec["components"]["schemas"][ref]["properties"]) == {"id", "deleted"}


@pytest.mark.parametrize(
    "body,param",
    [
        ({"url": "ftp://example.com/x", "events": ["*"]}, "url"),
        ({"url": "not a url", "events": ["*"]}, "url"),
        ({"url": "https://example.com/x", "events": []}, "events"),
        ({"url": "https://example.com/x", "events": ["payment.exploded"]}, "events"),
        ({"events": ["*"]}, "url"),
    ],
)
def test_bad_endpoints_are_400(merchant_api, body, param):
    response = merchant_api.post(URL, body, format="json")
    assert response.status_code == 400
    assert response.json()["error"]["param"] == param


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:8000/x",
        "http://localhost/x",
        "http://10.0.0.5/x",
        "http://169.254.169.254/latest/meta-data",
        "http://[::1]/x",
        "http://100.64.0.1/x",  # shared address space (carrier-grade NAT): not private, not global
        "http://100.127.255.254/x",
        "http://192.0.2.10/x",  # documentation range
        "http://198.18.0.1/x",  # benchmarking range
        "http://[::ffff:127.0.0.1]/x",  # loopback, IPv4-mapped
        "http://[fd00::1]/x",  # unique local
        "http://224.0.0.1/x",  # multicast
        "http://0.0.0.0/x",
    ],
)
def test_private_addresses_are_refused_in_production(merchant_api, settings, url):
    settings.WEBHOOK_ALLOW_PRIVATE_URLS = False
    response = merchant_api.post(URL, {"url": url, "events": ["*"]}, format="json")
    assert response.status_code == 400 and response.json()["error"]["param"] == "url"


def test_public_addresses_are_allowed_in_production(merchant_api, settings):
    settings.WEBHOOK_ALLOW_PRIVATE_URLS = False
    for url in ("https://8.8.8.8/hooks", "https://[2001:4860:4860::8888]/hooks"):
        assert merchant_api.post(URL, {"url": url, "events": ["*"]}, format="json").status_code == 201, url


def test_another_merchants_endpoint_is_404(merchant_api, client_for, receiver, allow_loopback):
    other = client_for(MerchantFactory())
    endpoint_id = other.post(URL, {"url": receiver.url, "events": ["*"]}, format="json").json()["id"]
    assert merchant_api.get(f"{URL}/{endpoint_id}").status_code == 404
    assert merchant_api.delete(f"{URL}/{endpoint_id}").status_code == 404
    assert merchant_api.get(f"{URL}/not-a-uuid").status_code == 404


def test_outbound_event_list_shows_delivery_status_and_filters(
    merchant, merchant_api, receiver, allow_loopback, client_for
):
    merchant_api.post(URL, {"url": receiver.url, "events": ["*"]}, format="json")
    receiver.statuses = [500]
    from webhooks.services import delivery_attempt

    first = event_emit(merchant=merchant, type="payment.succeeded", data={"n": 1})
    event_emit(merchant=merchant, type="charge.failed", data={"n": 2})
    event_emit(merchant=MerchantFactory(), type="payment.succeeded", data={"other": True})
    delivery_attempt(delivery_id=first.deliveries.get().pk)

    listed = merchant_api.get("/api/v1/webhooks").json()
    assert listed["count"] == 2
    assert [e["type"] for e in listed["results"]] == ["charge.failed", "payment.succeeded"]  # newest first
    delivery = listed["results"][1]["deliveries"][0]
    assert (delivery["status"], delivery["attempts"], delivery["last_response_code"]) == ("retrying", 1, 500)
    assert delivery["url"] == receiver.url
    by_type = merchant_api.get("/api/v1/webhooks?type=charge.failed").json()
    assert [e["data"] for e in by_type["results"]] == [{"n": 2}]
    by_status = merchant_api.get("/api/v1/webhooks?status=retrying").json()
    assert [e["id"] for e in by_status["results"]] == [str(first.id)]
    assert merchant_api.get("/api/v1/webhooks?status=bogus").status_code == 400


def test_endpoint_create_is_idempotent(merchant_api, receiver, allow_loopback):
    body = {"url": receiver.url, "events": ["*"]}
    first = merchant_api.post(URL, body, format="json", HTTP_IDEMPOTENCY_KEY="ep-1")
    again = merchant_api.post(URL, body, format="json", HTTP_IDEMPOTENCY_KEY="ep-1")
    assert again.json()["id"] == first.json()["id"] and again["Idempotent-Replayed"] == "true"


def test_staff_still_see_a_deleted_endpoint_in_admin(merchant_api, admin_client, receiver, allow_loopback):
    endpoint_id = merchant_api.post(URL, {"url": receiver.url, "events": ["*"]}, format="json").json()["id"]
    merchant_api.delete(f"{URL}/{endpoint_id}")
    listing = admin_client.get("/admin/webhooks/webhookendpoint/?deleted_at__isempty=0")
    assert listing.status_code == 200 and endpoint_id in listing.content.decode()
    assert admin_client.get(f"/admin/webhooks/webhookendpoint/{endpoint_id}/change/").status_code == 200
