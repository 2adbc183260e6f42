"""WEBHOOK_URLS: operator endpoints that get every merchant's events, signed with
WEBHOOK_URLS_SECRET, through the same outbox and retries, seen in the admin and never in
a merchant's API."""

import json
from datetime import timedelta

import pytest
from django.db import transaction
from django.utils import timezone

from payments.tests.factories import MerchantFactory
from webhooks.models import Delivery, WebhookEndpoint
from webhooks.services import NOT_CONFIGURED, delivery_attempt, endpoint_create, endpoint_disable, event_emit
from webhooks.signing import SignatureVerificationError, verify
from webhooks.tasks import webhooks_sweep_task

pytestmark = pytest.mark.django_db

GLOBAL_SECRET = "whsec_operator_test"


@pytest.fixture
def operator(settings, receiver):
    """WEBHOOK_URLS = the receiver (on 127.0.0.1), with private URLs refused for merchants."""
    settings.WEBHOOK_URLS = [receiver.url]
    settings.WEBHOOK_URLS_SECRET = GLOBAL_SECRET
    settings.WEBHOOK_ALLOW_PRIVATE_URLS = False
    return receiver


def _verified(request, secret: str) -> bool:
    try:
        verify(request["body"], request["headers"]["Paydesk-Signature"], [secret], 300, header_name="Paydesk-Signature")
    except SignatureVerificationError:
        return False
    return True


def test_every_merchants_events_are_delivered_signed_with_the_operator_secret(
    operator, django_capture_on_commit_callbacks
):
    one, two = MerchantFactory(), MerchantFactory()
    with django_capture_on_commit_callbacks(execute=True):
        first = event_emit(merchant=one, type="payment.succeeded", data={"n": 1})
        second = event_emit(merchant=two, type="credits.granted", data={"n": 2})
    assert [b["id"] for b in operator.bodies()] == [str(first.id), str(second.id)]
    assert all(_verified(r, GLOBAL_SECRET) for r in operator.requests)
    assert not any(_verified(r, "whsec_someone_else") for r in operator.requests)
    endpoint = WebhookEndpoint.objects.get()
    assert (endpoint.merchant, endpoint.url, endpoint.events, endpoint.secret) == (None, operator.url, ["*"], "")
    assert list(Delivery.objects.values_list("status", "endpoint")) == [("delivered", endpoint.pk)] * 2


def test_a_merchants_own_endpoint_gets_its_own_copy_with_its_own_secret(
    operator, merchant, settings, django_capture_on_commit_callbacks
):
    settings.WEBHOOK_ALLOW_PRIVATE_URLS = True  # the merchant's endpoint is on loopback too
    own = endpoint_create(merchant=merchant, url=operator.url + "?own", events=["*"])
    with django_capture_on_commit_callbacks(execute=True):
        event_emit(merchant=merchant, type="payment.succeeded", data={})
    assert len(operator.requests) == 2
    assert sum(_verified(r, GLOBAL_SECRET) for r in operator.requests) == 1
    assert sum(_verified(r, own.secret) for r in operator.requests) == 1


def test_a_failed_delivery_is_retried_on_the_schedule_and_recorded(operator, merchant):
    operator.statuses = [503]
    event = event_emit(merchant=merchant, type="charge.failed", data={})
    delivery = Delivery.objects.get()
    assert delivery_attempt(delivery_id=delivery.pk) == "retrying"
    delivery.refresh_from_db()
    assert (
        delivery.last_response_code == 503 and 50 <= (delivery.next_attempt_at - timezone.now()).total_seconds() <= 70
    )
    assert delivery_attempt(delivery_id=delivery.pk, now=timezone.now() + timedelta(minutes=2)) == "delivered"
    assert [b["id"] for b in operator.bodies()] == [str(event.id)] * 2
    assert all(_verified(r, GLOBAL_SECRET) for r in operator.requests)
    assert list(delivery.attempt_log.values_list("response_code", flat=True)) == [503, 200]


def test_a_rotated_secret_signs_the_retries(operator, merchant, settings):
    operator.statuses = [500]
    event_emit(merchant=merchant, type="charge.failed", data={})
    delivery = Delivery.objects.get()
    delivery_attempt(delivery_id=delivery.pk)
    settings.WEBHOOK_URLS_SECRET = "whsec_rotated"
    delivery_attempt(delivery_id=delivery.pk, now=timezone.now() + timedelta(minutes=2))
    assert [_verified(r, "whsec_rotated") for r in operator.requests] == [False, True]


def test_they_are_never_in_the_merchant_api(operator, merchant, merchant_api, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        event_emit(merchant=merchant, type="payment.succeeded", data={})
    endpoint = WebhookEndpoint.objects.get()
    assert merchant_api.get("/api/v1/webhook-endpoints").json()["count"] == 0
    assert merchant_api.get(f"/api/v1/webhook-endpoints/{endpoint.pk}").status_code == 404
    assert merchant_api.delete(f"/api/v1/webhook-endpoints/{endpoint.pk}").status_code == 404
    events = merchant_api.get("/api/v1/webhooks").json()
    assert events["count"] == 1 and events["results"][0]["deliveries"] == []
    assert operator.url not in json.dumps(events)
    assert merchant_api.get("/api/v1/webhooks?status=delivered").json()["count"] == 0
    assert Delivery.objects.get().status == "delivered"  # it was delivered, to the operator


def test_nor_in_the_staff_api(operator, merchant, admin_client):
    event_emit(merchant=merchant, type="payment.succeeded", data={})
    assert admin_client.get("/api/v1/webhook-endpoints").json()["count"] == 0


def test_staff_see_them_and_their_deliveries_in_the_admin(operator, merchant, admin_client):
    event_emit(merchant=merchant, type="payment.succeeded", data={})
    endpoint = WebhookEndpoint.objects.get()
    delivery = Delivery.objects.get()
    listed = admin_client.get("/admin/webhooks/delivery/?endpoint_kind=global").content.decode()
    assert str(delivery.pk) in listed
    assert str(delivery.pk) not in admin_client.get("/admin/webhooks/delivery/?endpoint_kind=merchant").content.decode()
    endpoints = admin_client.get("/admin/webhooks/webhookendpoint/?endpoint_kind=global").content.decode()
    assert operator.url in endpoints and "every merchant (WEBHOOK_URLS)" in endpoints
    page = admin_client.get(f"/admin/webhooks/webhookendpoint/{endpoint.pk}/change/")
    assert page.status_code == 200
    assert 'name="url"' not in page.content.decode()  # WEBHOOK_URLS's, not edited here


def test_a_url_that_leaves_webhook_urls_gets_nothing_new_and_comes_back_enabled(operator, merchant, settings):
    event_emit(merchant=merchant, type="payment.succeeded", data={})
    endpoint = WebhookEndpoint.objects.get()
    settings.WEBHOOK_URLS = []
    event_emit(merchant=merchant, type="payment.succeeded", data={})
    endpoint.refresh_from_db()
    assert (endpoint.enabled, endpoint.disabled_reason) == (False, NOT_CONFIGURED)
    assert Delivery.objects.count() == 1  # not even a held one
    settings.WEBHOOK_URLS = [operator.url]
    event_emit(merchant=merchant, type="payment.succeeded", data={})
    endpoint.refresh_from_db()
    assert (endpoint.enabled, endpoint.disabled_reason) == (True, "")
    assert Delivery.objects.filter(endpoint=endpoint).count() == 2 and WebhookEndpoint.objects.count() == 1


def test_one_staff_disabled_stays_disabled_and_holds_its_events(operator, merchant):
    event_emit(merchant=merchant, type="payment.succeeded", data={})
    endpoint_disable(endpoint=WebhookEndpoint.objects.get(), reason="disabled by staff")
    event_emit(merchant=merchant, type="payment.succeeded", data={})
    webhooks_sweep_task()
    endpoint = WebhookEndpoint.objects.get()
    assert not endpoint.enabled and endpoint.disabled_reason == "disabled by staff"
    assert sorted(Delivery.objects.values_list("status", flat=True)) == ["held", "pending"]


def test_the_sweep_creates_them_before_any_event(operator):
    assert not WebhookEndpoint.objects.exists()
    webhooks_sweep_task()
    assert WebhookEndpoint.objects.get().url == operator.url


def test_none_configured_none_created(settings, merchant):
    settings.WEBHOOK_URLS = []
    event_emit(merchant=merchant, type="payment.succeeded", data={})
    assert not WebhookEndpoint.objects.exists() and not Delivery.objects.exists()


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_first_events_of_20_concurrent_transactions_make_one_row_per_url(settings, receiver):
    from credits.tests.conftest import run_concurrently

    settings.WEBHOOK_URLS = [receiver.url, receiver.url + "/second"]
    merchants = [MerchantFactory() for _ in range(4)]

    def work(i):
        with transaction.atomic():
            event_emit(merchant=merchants[i % 4], type="payment.succeeded", data={"i": i})

    assert run_concurrently(20, work) == {"ok": 20}
    assert sorted(WebhookEndpoint.objects.values_list("url", flat=True)) == sorted(settings.WEBHOOK_URLS)
    assert Delivery.objects.count() == 40
