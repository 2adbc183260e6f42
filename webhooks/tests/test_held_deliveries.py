"""Events emitted while an endpoint is disabled are held for it, and go out once, when it
is re-enabled; what it had received before is not sent again."""

import uuid
from unittest import mock

import pytest

from config.tests.operator_actions_support import operator_url
from webhooks.models import Delivery, WebhookEndpoint
from webhooks.services import (
    deliveries_due_ids,
    delivery_replay,
    endpoint_create,
    endpoint_delete,
    endpoint_disable,
    endpoint_enable,
    event_emit,
)
from webhooks.tasks import webhooks_sweep_task

pytestmark = pytest.mark.django_db


@pytest.fixture
def endpoint(merchant, receiver, allow_loopback):
    return endpoint_create(merchant=merchant, url=receiver.url, events=["*"])


def emit(merchant, capture, n):
    with capture(execute=True):  # as after a real commit: due deliveries are sent inline (eager)
        return event_emit(merchant=merchant, type="payment.succeeded", data={"n": n})


def sent_ids(receiver) -> list[str]:
    return [body["id"] for body in receiver.bodies()]


def test_events_emitted_while_disabled_are_sent_once_after_re_enable(
    merchant, endpoint, receiver, django_capture_on_commit_callbacks
):
    before = emit(merchant, django_capture_on_commit_callbacks, 1)
    assert sent_ids(receiver) == [str(before.id)]

    endpoint_disable(endpoint=endpoint, reason="disabled by staff")
    missed = [emit(merchant, django_capture_on_commit_callbacks, n) for n in (2, 3)]
    assert sent_ids(receiver) == [str(before.id)]  # nothing sent while disabled...
    assert webhooks_sweep_task()["deliveries"] == 0  # ...not even by the sweep
    assert sorted(Delivery.objects.values_list("status", flat=True)) == ["delivered", "held", "held"]

    endpoint_enable(endpoint=endpoint)
    assert webhooks_sweep_task()["deliveries"] == 2
    assert webhooks_sweep_task()["deliveries"] == 0  # and only once
    # What it missed, oldest first; the event delivered before the disable is not re-sent.
    assert sent_ids(receiver) == [str(before.id), *(str(e.id) for e in missed)]
    assert set(Delivery.objects.values_list("status", flat=True)) == {"delivered"}
    assert set(Delivery.objects.values_list("attempts", flat=True)) == {1}


def test_an_auto_disabled_endpoint_gets_what_it_missed_after_re_enable(
    merchant, endpoint, receiver, settings, django_capture_on_commit_callbacks
):
    settings.WEBHOOK_DISABLE_AFTER_FAILURES = 1
    receiver.statuses = [500]
    failed = emit(merchant, django_capture_on_commit_callbacks, 1)
    endpoint.refresh_from_db()
    assert endpoint.enabled is False
    missed = emit(merchant, django_capture_on_commit_callbacks, 2)
    assert Delivery.objects.get(event=missed).status == "held"

    endpoint_enable(endpoint=endpoint)
    webhooks_sweep_task()
    # The retrying one waits for its backoff; the held one goes out now, once.
    assert sent_ids(receiver) == [str(failed.id), str(missed.id)]
    assert Delivery.objects.get(event=missed).status == "delivered"
    assert Delivery.objects.get(event=failed).status == "retrying"


def test_a_held_delivery_of_an_endpoint_enabled_meanwhile_is_released_by_the_sweep(merchant, endpoint, receiver):
    # An emitting transaction that read the endpoint disabled, and committed only after
    # endpoint_enable had released what it held: its delivery is held on an enabled endpoint.
    with mock.patch("webhooks.tasks.delivery_attempt_task.apply_async"):
        event = event_emit(merchant=merchant, type="payment.succeeded", data={})
    Delivery.objects.filter(event=event).update(status="held")
    assert webhooks_sweep_task()["deliveries"] == 1
    assert sent_ids(receiver) == [str(event.id)] and Delivery.objects.get().status == "delivered"


def test_the_admin_action_re_enables_and_what_was_missed_goes_out(
    merchant, endpoint, receiver, admin_client, django_capture_on_commit_callbacks
):
    endpoint_disable(endpoint=endpoint, reason="disabled by staff")
    missed = emit(merchant, django_capture_on_commit_callbacks, 1)
    response = admin_client.post(
        operator_url(WebhookEndpoint, "enable_endpoint", [endpoint]),
        {"token": str(uuid.uuid4()), "reason": "receiver is back"},
    )
    assert response.status_code == 302
    assert WebhookEndpoint.objects.get(pk=endpoint.pk).enabled is True
    webhooks_sweep_task()
    assert sent_ids(receiver) == [str(missed.id)]


def test_held_deliveries_of_a_deleted_endpoint_fail_and_are_never_sent(
    merchant, endpoint, receiver, django_capture_on_commit_callbacks
):
    endpoint_disable(endpoint=endpoint, reason="disabled by staff")
    emit(merchant, django_capture_on_commit_callbacks, 1)
    endpoint_delete(endpoint=endpoint)
    delivery = Delivery.objects.get()
    assert (delivery.status, delivery.last_error) == ("failed", "The endpoint was deleted.")
    webhooks_sweep_task()
    assert receiver.requests == []


def test_a_replayed_held_delivery_still_waits_for_the_endpoint(
    merchant, endpoint, receiver, django_capture_on_commit_callbacks
):
    endpoint_disable(endpoint=endpoint, reason="disabled by staff")
    emit(merchant, django_capture_on_commit_callbacks, 1)
    with django_capture_on_commit_callbacks(execute=True):
        delivery_replay(delivery=Delivery.objects.get())
    assert receiver.requests == [] and deliveries_due_ids() == []
    endpoint_enable(endpoint=endpoint)
    webhooks_sweep_task()
    assert len(receiver.requests) == 1


def test_the_api_shows_a_held_delivery_as_pending(
    merchant, merchant_api, api, endpoint, django_capture_on_commit_callbacks
):
    endpoint_disable(endpoint=endpoint, reason="disabled by staff")
    event = emit(merchant, django_capture_on_commit_callbacks, 1)
    listed = merchant_api.get("/api/v1/webhooks?status=pending").json()["results"]
    assert [e["id"] for e in listed] == [str(event.id)]
    assert listed[0]["deliveries"][0]["status"] == "pending"
    assert merchant_api.get("/api/v1/webhooks?status=held").status_code == 400  # not an API status

    spec = api.get("/api/schema/?format=json").json()
    delivery = spec["components"]["schemas"]["DeliveryOut"]["properties"]["status"]
    ref = (delivery.get("allOf") or [delivery])[0]["$ref"].rsplit("/", 1)[-1]
    assert spec["components"]["schemas"][ref]["enum"] == ["pending", "delivered", "retrying", "failed"]
