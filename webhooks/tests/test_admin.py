"""Operator actions on webhooks: re-process an inbound event, resend a delivery, switch an
endpoint off and on; each through its service, confirmed, audited, finance only."""

import json

import pytest
from django.utils import timezone

from config.tests.operator_actions_support import action_names, audit_of
from payments.models import Payment
from payments.services import payment_create
from webhooks.models import Delivery, InboundEvent, WebhookEndpoint
from webhooks.services import event_emit, inbound_event_record

pytestmark = pytest.mark.django_db


@pytest.fixture
def endpoint(merchant):
    return WebhookEndpoint.objects.create(
        merchant=merchant, url="https://hooks.example.com/paydesk", events=["*"], secret="whsec_test"
    )


@pytest.fixture
def delivery(merchant, endpoint):
    event_emit(merchant=merchant, type="payment.succeeded", data={"id": "p_1"})
    delivery = Delivery.objects.get()
    Delivery.objects.filter(pk=delivery.pk).update(status="failed", attempts=8, last_response_code=500)
    delivery.refresh_from_db()
    return delivery


def stored_notification(payment) -> InboundEvent:
    """A verified provider notification stored but never processed (its task was lost)."""
    payload = {
        "provider": payment.provider,
        "provider_payment_id": payment.provider_payment_id,
        "status": "paid",
        "amount": payment.amount,
        "currency": payment.currency,
    }
    event, _ = inbound_event_record(
        provider=payment.provider,
        event_id="evt_lost_1",
        type="payment.paid",
        payload=payload,
        raw_body=json.dumps(payload),
        headers={},
        verified=True,
    )
    return event


def test_reprocess_an_inbound_event_runs_its_handler_and_is_audited(operators, merchant):
    payment = payment_create(merchant=merchant, order_id="o-1", amount=1000, currency="usd")
    event = stored_notification(payment)
    page = operators.finance.open(InboundEvent, "reprocess_inbound_event", [event])
    assert page.status_code == 200 and b"Run the mock payment.paid handler again." in page.content
    assert Payment.objects.get(pk=payment.pk).status == "pending"

    done = operators.finance.confirm(InboundEvent, "reprocess_inbound_event", [event], reason="task was lost")

    assert done.status_code == 302
    event.refresh_from_db()
    assert (event.status, event.attempts) == ("processed", 1)
    assert Payment.objects.get(pk=payment.pk).status == "succeeded"
    (entry,) = audit_of(event)
    assert (entry["reason"], entry["details"]["status"], entry["user"]) == (
        "task was lost",
        "processed",
        operators.finance.user,
    )


def test_resend_a_delivery(operators, delivery):
    page = operators.finance.open(Delivery, "resend_delivery", [delivery])
    assert b"Send event" in page.content and b"https://hooks.example.com/paydesk" in page.content

    empty = operators.finance.confirm(Delivery, "resend_delivery", [delivery], reason="")
    assert empty.status_code == 200 and Delivery.objects.get(pk=delivery.pk).status == "failed"

    operators.finance.confirm(Delivery, "resend_delivery", [delivery], reason="receiver fixed their 500s")
    delivery.refresh_from_db()
    assert delivery.status == "pending" and delivery.next_attempt_at <= timezone.now()
    assert audit_of(delivery)[0]["reason"] == "receiver fixed their 500s"


def test_a_delivery_to_a_deleted_endpoint_is_not_resent(operators, delivery, endpoint):
    WebhookEndpoint.objects.filter(pk=endpoint.pk).update(deleted_at=timezone.now(), enabled=False)
    page = operators.finance.open(Delivery, "resend_delivery", [delivery])
    assert b"Skipped: the merchant deleted its endpoint" in page.content
    operators.finance.forge(Delivery, "resend_delivery", [delivery], reason="x")
    assert Delivery.objects.get(pk=delivery.pk).status == "failed" and not audit_of(delivery)


def test_disable_then_enable_an_endpoint(operators, endpoint):
    operators.finance.confirm(WebhookEndpoint, "disable_endpoint", [endpoint], reason="receiver is down for a week")
    endpoint.refresh_from_db()
    assert not endpoint.enabled and "receiver is down for a week" in endpoint.disabled_reason
    assert "ops-finance" in endpoint.disabled_reason

    page = operators.finance.open(WebhookEndpoint, "disable_endpoint", [endpoint])
    assert b"Skipped: it is disabled already." in page.content

    operators.finance.confirm(WebhookEndpoint, "enable_endpoint", [endpoint], reason="back up")
    endpoint.refresh_from_db()
    assert endpoint.enabled and endpoint.disabled_reason == ""
    assert [e["operator_action"] for e in audit_of(endpoint)] == ["enable_endpoint", "disable_endpoint"]


def test_support_cannot_reprocess_resend_or_switch_endpoints(operators, merchant, delivery, endpoint):
    payment = payment_create(merchant=merchant, order_id="o-1", amount=1000, currency="usd")
    event = stored_notification(payment)
    support = operators.support
    for url, actions in (
        ("/admin/webhooks/inboundevent/", {"reprocess_inbound_event"}),
        ("/admin/webhooks/delivery/", {"resend_delivery"}),
        ("/admin/webhooks/webhookendpoint/", {"enable_endpoint", "disable_endpoint"}),
    ):
        listing = support.client.get(url)
        assert listing.status_code == 200 and not actions & set(action_names(listing)), url
        assert actions <= set(action_names(operators.finance.client.get(url))), url

    assert support.forge(InboundEvent, "reprocess_inbound_event", [event], reason="x").status_code == 403
    assert support.forge(Delivery, "resend_delivery", [delivery], reason="x").status_code == 403
    assert support.forge(WebhookEndpoint, "disable_endpoint", [endpoint], reason="x").status_code == 403

    assert InboundEvent.objects.get(pk=event.pk).status == "received"
    assert Payment.objects.get(pk=payment.pk).status == "pending"
    assert Delivery.objects.get(pk=delivery.pk).status == "failed"
    assert WebhookEndpoint.objects.get(pk=endpoint.pk).enabled
