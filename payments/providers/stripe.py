"""Stripe through stripe-python: PaymentIntents (client_secret) by default, a Checkout
Session (url) when the payment has a return_url. STRIPE_API_BASE points it at a local
emulator (localstripe) for end-to-end tests.

Only parameters that both Stripe and localstripe accept are sent (localstripe refuses
unknown ones such as automatic_payment_methods or description); the extras real Stripe
wants go only to real Stripe. Every call carries an idempotency key.
"""

import stripe
from django.conf import settings

from .base import (
    CreatedPayment,
    OffSessionResult,
    PaymentProvider,
    ProviderDeclined,
    ProviderUnavailable,
    RefundResult,
    register,
)

TIMEOUT_SECONDS = 20
_STATUS = {
    "succeeded": "succeeded",
    "canceled": "canceled",
    "requires_payment_method": "pending",
    "requires_confirmation": "pending",
    "requires_action": "pending",
    "processing": "pending",
    "requires_capture": "pending",
}


def _client() -> stripe.StripeClient:
    base = {"api": settings.STRIPE_API_BASE} if settings.STRIPE_API_BASE else None
    return stripe.StripeClient(
        settings.STRIPE_SECRET_KEY,
        base_addresses=base,
        max_network_retries=2,
        http_client=stripe.RequestsClient(timeout=TIMEOUT_SECONDS),
    )


def _real_stripe() -> bool:
    return not settings.STRIPE_API_BASE


def _failure(exc: stripe.StripeError) -> ProviderDeclined | ProviderUnavailable:
    """Ours for one of stripe-python's errors: 4xx → declined, everything else → unavailable.

    The message is ours (plus Stripe's error code, or a card error's message, which Stripe
    writes for the payer); Stripe's own text for the rest (request ids, object ids, a masked
    API key, requests' connection errors) goes to `detail` only."""
    code = getattr(exc, "code", None)
    status = exc.http_status
    detail = f"{type(exc).__name__} (HTTP {status}, code {code}): {exc}"
    if isinstance(exc, stripe.CardError):
        return ProviderDeclined(
            exc.user_message or f"The card was declined ({code or 'card_declined'}).", detail=detail
        )
    if isinstance(exc, stripe.InvalidRequestError):
        return ProviderDeclined(f"The payment provider refused the request ({code or status}).", detail=detail)
    if isinstance(exc, (stripe.AuthenticationError, stripe.PermissionError)):
        return ProviderDeclined("The payment provider refused Paydesk's credentials.", detail=detail)
    if isinstance(exc, stripe.APIConnectionError):
        return ProviderUnavailable("The payment provider could not be reached.", detail=detail)
    if isinstance(exc, stripe.RateLimitError):
        return ProviderUnavailable("The payment provider is rate limiting requests (429).", detail=detail)
    if status:
        return ProviderUnavailable(f"The payment provider answered {status}.", detail=detail)
    return ProviderUnavailable("The payment provider failed.", detail=detail)


def _call(func, *args, **kwargs):
    """Call stripe-python, its errors mapped to ours (_failure)."""
    try:
        return func(*args, **kwargs)
    except stripe.StripeError as exc:
        raise _failure(exc) from exc


@register
class StripeProvider(PaymentProvider):
    name = "stripe"

    def is_available(self) -> bool:
        return bool(settings.STRIPE_SECRET_KEY)

    def create_payment(self, *, payment, idempotency_key: str) -> CreatedPayment:
        client = _client()
        metadata = {"paydesk_payment": str(payment.pk), "order_id": payment.order_id}
        customer_id = payment.customer.stripe_customer_id if payment.customer_id else ""
        if payment.return_url:
            params = {
                "mode": "payment",
                "success_url": payment.return_url,
                "cancel_url": payment.return_url,
                "client_reference_id": str(payment.pk),
                "metadata": metadata,
                "payment_intent_data": {"metadata": metadata},
                "line_items": [
                    {
                        "quantity": 1,
                        "price_data": {
                            "currency": payment.currency,
                            "unit_amount": payment.amount,
                            "product_data": {"name": payment.description or f"Order {payment.order_id}"},
                        },
                    }
                ],
            }
            if customer_id:
                params["customer"] = customer_id
            session = _call(client.v1.checkout.sessions.create, params, {"idempotency_key": idempotency_key})
            return CreatedPayment(provider_payment_id=session.id, payment_url=session.url or "")
        params = {"amount": payment.amount, "currency": payment.currency, "metadata": metadata}
        if customer_id:
            params["customer"] = customer_id
        if _real_stripe():
            params["automatic_payment_methods"] = {"enabled": True}
            if payment.description:
                params["description"] = payment.description
        intent = _call(client.v1.payment_intents.create, params, {"idempotency_key": idempotency_key})
        return CreatedPayment(provider_payment_id=intent.id, client_secret=intent.client_secret or "")

    def retrieve_status(self, *, payment) -> str:
        client = _client()
        if payment.provider_payment_id.startswith("cs_"):
            session = _call(client.v1.checkout.sessions.retrieve, payment.provider_payment_id)
            if session.status == "expired":
                return "expired"
            return "succeeded" if session.payment_status == "paid" else "pending"
        intent = _call(client.v1.payment_intents.retrieve, payment.provider_payment_id)
        # requires_payment_method after a failed attempt is still open: the payer may try
        # another card. Left unpaid, the payment expires (and the intent is canceled).
        return _STATUS.get(intent.status, "pending")

    def cancel_payment(self, *, payment) -> None:
        client = _client()
        if payment.provider_payment_id.startswith("cs_"):
            _call(client.v1.checkout.sessions.expire, payment.provider_payment_id)
        else:
            _call(client.v1.payment_intents.cancel, payment.provider_payment_id)

    def refund(self, *, payment, amount: int, idempotency_key: str) -> RefundResult:
        client = _client()
        intent_id = payment.provider_payment_id
        if intent_id.startswith("cs_"):
            session = _call(client.v1.checkout.sessions.retrieve, intent_id)
            intent_id = session.payment_intent
        refund = _call(
            client.v1.refunds.create,
            {"payment_intent": intent_id, "amount": amount},
            {"idempotency_key": idempotency_key},
        )
        return RefundResult(provider_refund_id=refund.id, status=refund.status or "pending")

    def charge_off_session(
        self, *, customer, amount: int, currency: str, idempotency_key: str, description: str, metadata: dict
    ) -> OffSessionResult:
        if not customer.stripe_customer_id or not customer.payment_method:
            raise ProviderDeclined("The customer has no saved card.")
        params = {
            "amount": amount,
            "currency": currency,
            "customer": customer.stripe_customer_id,
            "payment_method": customer.payment_method,
            "off_session": True,
            "confirm": True,
            "metadata": {k: str(v) for k, v in metadata.items()},
        }
        try:
            intent = _client().v1.payment_intents.create(params, {"idempotency_key": idempotency_key})
        except stripe.CardError as exc:
            intent_id = getattr(getattr(exc, "error", None), "payment_intent", None)
            intent_id = getattr(intent_id, "id", None) or ""
            return OffSessionResult(
                provider_payment_id=intent_id,
                status="failed",
                failure_reason=exc.code or exc.user_message or "card_declined",
            )
        except stripe.StripeError as exc:
            failure = _failure(exc)
            if isinstance(failure, ProviderDeclined) and not isinstance(exc, stripe.InvalidRequestError):
                # Bad credentials fail no customer's charge: it stays pending and is asked again.
                failure = ProviderUnavailable(failure.message, detail=failure.detail)
            raise failure from exc
        return _off_session_result(intent)

    def retrieve_charge(self, *, provider_charge_id: str) -> OffSessionResult:
        return _off_session_result(_call(_client().v1.payment_intents.retrieve, provider_charge_id))


def _off_session_result(intent) -> OffSessionResult:
    """succeeded; processing (some payment methods) or requires_capture is still on its
    way: pending, settled by payment_intent.* webhooks; anything else is a failure."""
    if intent.status == "succeeded":
        return OffSessionResult(provider_payment_id=intent.id, status="succeeded")
    if intent.status in ("processing", "requires_capture"):
        return OffSessionResult(provider_payment_id=intent.id, status="pending")
    reason = getattr(intent.last_payment_error, "code", None) or intent.status
    return OffSessionResult(provider_payment_id=intent.id, status="failed", failure_reason=reason or "failed")
