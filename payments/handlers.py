"""Inbound provider events that move payments (registered with webhooks in ready()).

Handlers read only the verified payload (no call back to the provider), are idempotent
(repeats are no-ops) and safe out of order (a late failure never undoes a success);
payment_settle_from_provider holds those rules. Events about something that is not a
Paydesk payment return Ignored with the reason.
"""

from payments.models import Payment, PaymentEvent
from payments.services import payment_record_provider_refund, payment_settle_from_provider
from webhooks.registry import Ignored, register_handler
from webhooks.services import inbound_event_flag

SOURCE = PaymentEvent.Source.PROVIDER_WEBHOOK
GENERIC_OUTCOMES = {
    "paid": "succeeded",
    "succeeded": "succeeded",
    "failed": "failed",
    "canceled": "canceled",
    "cancelled": "canceled",
    "expired": "expired",
}


def _settle(event, payment: Payment | None, outcome: str, amount, currency, reason: str = ""):
    if payment is None:
        return Ignored("No Paydesk payment matches this event.")
    result, flagged = payment_settle_from_provider(
        payment_id=payment.pk,
        outcome=outcome,
        amount=amount,
        currency=currency,
        source=SOURCE,
        data={"event": event.event_id, "event_type": event.type, "provider": event.provider},
        reason=reason,
    )
    if flagged:
        inbound_event_flag(event=event, reason=f"payment {payment.pk}: {result}")
    return None


@register_handler("*", *(f"payment.{status}" for status in GENERIC_OUTCOMES))
def provider_notification(event):
    """API.md's provider notification: {"provider", "provider_payment_id", "status", "amount", "currency"}."""
    body = event.payload
    payment = Payment.objects.filter(provider=event.provider, provider_payment_id=body["provider_payment_id"]).first()
    return _settle(event, payment, GENERIC_OUTCOMES[body["status"]], body["amount"], body["currency"])


def _stripe_payment(obj: dict) -> Payment | None:
    payment_id = (obj.get("metadata") or {}).get("paydesk_payment")
    if payment_id:
        payment = Payment.objects.filter(pk=payment_id, provider="stripe").first() if _is_uuid(payment_id) else None
        if payment:
            return payment
    return Payment.objects.filter(provider="stripe", provider_payment_id=obj.get("id", "")).first()


def _is_uuid(value: str) -> bool:
    import uuid

    try:
        uuid.UUID(str(value))
        return True
    except ValueError:
        return False


@register_handler("stripe", "payment_intent.succeeded")
def stripe_intent_succeeded(event):
    obj = event.payload["data"]["object"]
    amount = obj.get("amount_received") or obj.get("amount")
    return _settle(event, _stripe_payment(obj), "succeeded", amount, obj.get("currency"))


@register_handler("stripe", "payment_intent.payment_failed")
def stripe_intent_failed(event):
    obj = event.payload["data"]["object"]
    error = obj.get("last_payment_error") or {}
    reason = error.get("message") or error.get("code") or "payment failed"
    return _settle(event, _stripe_payment(obj), "failed", None, obj.get("currency"), reason=reason)


@register_handler("stripe", "checkout.session.completed")
def stripe_checkout_completed(event):
    obj = event.payload["data"]["object"]
    payment = _stripe_payment(obj)
    if payment is None:
        return Ignored("Not a Paydesk payment's checkout session.")
    if obj.get("payment_status") != "paid":
        return Ignored(f"Checkout completed with payment_status {obj.get('payment_status')!r}: not paid yet.")
    return _settle(event, payment, "succeeded", obj.get("amount_total"), obj.get("currency"))


@register_handler("stripe", "checkout.session.expired")
def stripe_checkout_expired(event):
    obj = event.payload["data"]["object"]
    payment = _stripe_payment(obj)
    if payment is None:
        return Ignored("Not a Paydesk payment's checkout session.")
    return _settle(event, payment, "expired", None, obj.get("currency"), reason="checkout session expired")


@register_handler("stripe", "charge.refunded")
def stripe_charge_refunded(event):
    obj = event.payload["data"]["object"]
    payment = _stripe_payment({"id": obj.get("payment_intent") or "", "metadata": obj.get("metadata") or {}})
    if payment is None:
        return Ignored("The refunded charge is not a Paydesk payment's.")
    refunds = (obj.get("refunds") or {}).get("data") or []
    payment_record_provider_refund(
        payment_id=payment.pk,
        total_refunded=int(obj.get("amount_refunded") or 0),
        provider_refund_id=refunds[0]["id"] if refunds else "",
        source=SOURCE,
        data={"event": event.event_id, "event_type": event.type},
    )
    return None
