"""Inbound provider events that move payments (registered with webhooks in ready()).

Handlers read only the verified payload (no call back to the provider), are idempotent
(repeats are no-ops) and safe out of order (a late failure never undoes a success, and
money collected is booked whatever came before); payment_settle_from_provider holds
those rules. A Stripe payment_failed is one failed attempt, not the payment's end.
Events about something that is not a Paydesk payment return Ignored with the reason.
"""

from payments.charges import charge_settle_from_provider
from payments.models import Charge, Payment, PaymentEvent
from payments.ownership import payment_charge, payments_by_provider_id
from payments.services import payment_attempt_failed, payment_record_provider_refund, payment_settle_from_provider
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


def _settle(
    event,
    payment: Payment | None,
    outcome: str,
    amount,
    currency,
    reason: str = "",
    charge: Charge | None = None,
    provider_id: str = "",
):
    """Settle the payment, or, when the event is about a charge's card part (the payment
    belongs to a charge), the charge: a charge owns its payment."""
    if charge is None and payment is not None:
        charge = payment_charge(payment)
    if payment is None and charge is None:
        return Ignored("No Paydesk payment matches this event.")
    data = {"event": event.event_id, "event_type": event.type, "provider": event.provider}
    if charge is not None:
        result, flagged = charge_settle_from_provider(
            charge=charge,
            outcome=outcome,
            amount=amount,
            currency=currency,
            provider_charge_id=provider_id,
            data=data,
            reason=reason,
        )
        subject = f"charge {charge.pk}"
    else:
        result, flagged = payment_settle_from_provider(
            payment_id=payment.pk,
            payment=payment,
            outcome=outcome,
            amount=amount,
            currency=currency,
            source=SOURCE,
            data=data,
            reason=reason,
        )
        subject = f"payment {payment.pk}"
    if flagged:
        inbound_event_flag(event=event, reason=f"{subject}: {result}")
    return None


@register_handler("*", *(f"payment.{status}" for status in GENERIC_OUTCOMES))
def provider_notification(event):
    """API.md's provider notification: {"provider", "provider_payment_id", "status", "amount", "currency"}."""
    body = event.payload
    payment = _payment_by_provider_id(event.provider, body["provider_payment_id"])
    outcome = GENERIC_OUTCOMES[body["status"]]
    provider_id = body["provider_payment_id"]
    reason = ""
    if outcome != "succeeded":  # never a failure without its reason: the provider's, or what it said
        reason = body.get("failure_reason") or f"{event.provider} reported the payment {body['status']}"
    return _settle(event, payment, outcome, body["amount"], body["currency"], reason=reason, provider_id=provider_id)


def _payment_by_provider_id(provider: str, provider_payment_id: str) -> Payment | None:
    found = payments_by_provider_id(provider=provider, provider_payment_id=provider_payment_id)
    return found[0] if found else None


def _stripe_charge(obj: dict) -> Charge | None:
    """A Paydesk charge's off-session PaymentIntent carries its id in the metadata."""
    charge_id = (obj.get("metadata") or {}).get("paydesk_charge")
    return Charge.objects.filter(pk=charge_id).first() if charge_id and _is_uuid(charge_id) else None


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
    charge, currency = _stripe_charge(obj), obj.get("currency")
    return _settle(
        event, _stripe_payment(obj), "succeeded", amount, currency, charge=charge, provider_id=obj.get("id", "")
    )


@register_handler("stripe", "payment_intent.payment_failed")
def stripe_intent_failed(event):
    """An attempt failed; the PaymentIntent is back to requires_payment_method. A payment
    stays open for the payer's next try (payment_attempt_failed). A charge's off-session
    card part has no payer to try again: the charge fails."""
    obj = event.payload["data"]["object"]
    error = obj.get("last_payment_error") or {}
    reason = error.get("message") or error.get("code") or "payment failed"
    charge, currency, provider_id = _stripe_charge(obj), obj.get("currency"), obj.get("id", "")
    payment = _stripe_payment(obj)
    if charge is None and payment is not None:
        charge = payment_charge(payment)
    if charge is not None or payment is None:
        return _settle(event, payment, "failed", None, currency, reason=reason, charge=charge, provider_id=provider_id)
    payment_attempt_failed(
        payment_id=payment.pk,
        source=SOURCE,
        data={"event": event.event_id, "event_type": event.type, "provider": event.provider},
        error={key: error.get(key) for key in ("charge", "code", "decline_code", "message", "type") if error.get(key)},
    )
    return None


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
