"""The dj-stripe mirror: filled from processed, verified Stripe events when a key is set,
by a task that fails soft (no route to Stripe here, as in CI)."""

import logging
from unittest import mock

import pytest
import stripe
from celery.exceptions import Retry
from djstripe.models import Customer as StripeCustomer
from djstripe.models import PaymentIntent

from webhooks.mirror import mirror_model_for
from webhooks.models import InboundEvent
from webhooks.tasks import stripe_mirror_sync_task

from .support import signed_post, stripe_event

pytestmark = pytest.mark.django_db

URL = "/api/v1/webhooks/stripe"
FAKE_KEY = "sk_test_" + "p" * 24  # the shape dj-stripe accepts


@pytest.fixture
def stripe_key(settings, monkeypatch):
    settings.STRIPE_SECRET_KEY = FAKE_KEY
    monkeypatch.setattr(stripe, "api_base", "http://127.0.0.1:9")  # refused: no network, whatever the machine
    return FAKE_KEY


def deliver(api, secret, name="payment_intent.succeeded", event_id="evt_mirror_1", **fields):
    return signed_post(api, URL, stripe_event(name, event_id=event_id, **fields), secret=secret)


def test_objects_map_to_their_djstripe_models():
    assert mirror_model_for("payment_intent") is PaymentIntent
    assert mirror_model_for("customer") is StripeCustomer
    assert mirror_model_for("invoice").__name__ == "Invoice"
    assert mirror_model_for("checkout.session").__name__ == "Session"
    assert mirror_model_for("event") is None and mirror_model_for("no_such_thing") is None
    assert mirror_model_for({"not": "a name"}) is None and mirror_model_for(None) is None


def test_without_a_key_nothing_is_scheduled(api, stripe_secret, settings, django_capture_on_commit_callbacks):
    settings.STRIPE_SECRET_KEY = ""
    with mock.patch("webhooks.tasks.stripe_mirror_sync_task.apply_async") as send:
        with django_capture_on_commit_callbacks(execute=True):
            assert deliver(api, stripe_secret).status_code == 200
    assert InboundEvent.objects.get().status == "ignored"  # nobody handles it here; still mirrored with a key
    send.assert_not_called()


def test_with_a_key_the_processed_event_is_scheduled_once(
    api, stripe_secret, stripe_key, django_capture_on_commit_callbacks
):
    with mock.patch("webhooks.tasks.stripe_mirror_sync_task.apply_async") as send:
        with django_capture_on_commit_callbacks(execute=True):
            deliver(api, stripe_secret)
            deliver(api, stripe_secret)  # a repeat: processed once, synced once
    assert [c.args[0] for c in send.call_args_list] == [(str(InboundEvent.objects.get().pk),)]


def test_unverified_events_are_not_mirrored(api, settings, stripe_key, django_capture_on_commit_callbacks):
    settings.STRIPE_WEBHOOK_SECRET, settings.DEBUG = "", True  # accepted, unverified
    with mock.patch("webhooks.tasks.stripe_mirror_sync_task.apply_async") as send:
        with django_capture_on_commit_callbacks(execute=True):
            assert api.post(URL, stripe_event("payment_intent.succeeded"), format="json").status_code == 200
    send.assert_not_called()


def test_the_task_syncs_the_payload_object_into_its_model(api, stripe_secret, stripe_key):
    deliver(api, stripe_secret)  # stored; its on-commit tasks not run here
    event = InboundEvent.objects.get()
    with mock.patch.object(PaymentIntent, "sync_from_stripe_data") as sync:
        assert stripe_mirror_sync_task(str(event.pk)) == "synced"
    sync.assert_called_once_with(event.payload["data"]["object"], api_key=FAKE_KEY)


def test_with_no_network_the_task_fails_soft_and_the_event_stays_processed(
    api, stripe_secret, stripe_key, django_capture_on_commit_callbacks, caplog
):
    from .test_inbound import calls

    body = stripe_event("payment_intent.succeeded", event_id="evt_mirror_2")
    body["type"] = "paydesk_test.ok"  # a type with a handler here
    with caplog.at_level(logging.WARNING, logger="paydesk.webhooks"):
        with django_capture_on_commit_callbacks(execute=True):
            response = signed_post(api, URL, body, secret=stripe_secret)  # eager: the sync runs and fails
    assert response.status_code == 200
    event = InboundEvent.objects.get()
    assert (event.status, event.last_error, event.attempts) == ("processed", "", 1)
    assert calls["ok"] == ["evt_mirror_2"]
    assert any(r.getMessage() == "stripe mirror sync gave up" for r in caplog.records)
    assert not PaymentIntent.objects.exists()


def test_transient_errors_are_retried_with_backoff_then_given_up(api, stripe_secret, stripe_key, caplog):
    deliver(api, stripe_secret)
    event_id = str(InboundEvent.objects.get().pk)
    down = stripe.APIConnectionError("no route to Stripe")
    with mock.patch.object(PaymentIntent, "sync_from_stripe_data", side_effect=down):
        with mock.patch.object(stripe_mirror_sync_task, "retry", side_effect=Retry()) as retry:
            with pytest.raises(Retry):
                stripe_mirror_sync_task(event_id)  # as a worker runs it: not eager
        assert 24 <= retry.call_args.kwargs["countdown"] <= 36
        assert retry.call_args.kwargs["exc"] is down
        with mock.patch.object(stripe_mirror_sync_task, "max_retries", 0):  # retries used up
            with caplog.at_level(logging.WARNING, logger="paydesk.webhooks"):
                assert stripe_mirror_sync_task(event_id) == "gave-up"
    assert any(r.getMessage() == "stripe mirror sync gave up" for r in caplog.records)


def test_a_permanent_error_is_not_retried(api, stripe_secret, stripe_key):
    deliver(api, stripe_secret)
    event_id = str(InboundEvent.objects.get().pk)
    refused = stripe.AuthenticationError("Invalid API Key provided")
    with mock.patch.object(PaymentIntent, "sync_from_stripe_data", side_effect=refused):
        with mock.patch.object(stripe_mirror_sync_task, "retry") as retry:
            assert stripe_mirror_sync_task(event_id) == "gave-up"
    retry.assert_not_called()
    assert InboundEvent.objects.get().status in ("received", "ignored")  # untouched by the sync
