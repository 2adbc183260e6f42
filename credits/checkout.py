"""Buying a credit pack: a Stripe Checkout Session, or the mock provider's local page
when no STRIPE_SECRET_KEY is set and MOCK_PROVIDER_ENABLED is on (it completes with a
Stripe-shaped, signed checkout.session.completed through the same receive path as
Stripe's own).

The Checkout row is committed before Stripe is called (no lock is held across the
network call) and the call carries an idempotency key derived from it.
"""

import json
import time

import stripe
from django.conf import settings
from django.db import transaction
from django.urls import reverse

from config.errors import ProviderError, ServiceUnavailable
from payments.identity.models import Customer

from .models import Checkout, CreditPack

TIMEOUT_SECONDS = 20


def _client() -> stripe.StripeClient:
    base = {"api": settings.STRIPE_API_BASE} if settings.STRIPE_API_BASE else None
    return stripe.StripeClient(
        settings.STRIPE_SECRET_KEY,
        base_addresses=base,
        max_network_retries=2,
        http_client=stripe.RequestsClient(timeout=TIMEOUT_SECONDS),
    )


def checkout_metadata(checkout: Checkout) -> dict:
    return {
        "paydesk_customer": str(checkout.customer_id),
        "credits": str(checkout.pack.credits),
        "pack": checkout.pack.code,
        "paydesk_checkout": str(checkout.pk),
    }


def _stripe_params(checkout: Checkout) -> dict:
    pack = checkout.pack
    if pack.stripe_price_id:
        line = {"price": pack.stripe_price_id, "quantity": 1}
    else:
        line = {
            "price_data": {
                "currency": pack.currency,
                "unit_amount": pack.price_amount,
                "product_data": {"name": pack.name},
            },
            "quantity": 1,
        }
    metadata = checkout_metadata(checkout)
    params = {
        "mode": "payment",
        "line_items": [line],
        "client_reference_id": str(checkout.customer_id),
        "metadata": metadata,
        # On the PaymentIntent too, so its charge (and a refund of it) names the purchase.
        "payment_intent_data": {"metadata": metadata},
        "success_url": checkout.success_url,
        "cancel_url": checkout.cancel_url,
    }
    if checkout.customer.stripe_customer_id:
        params["customer"] = checkout.customer.stripe_customer_id
    return params


def credits_checkout_create(*, customer: Customer, pack: CreditPack, success_url: str, cancel_url: str) -> Checkout:
    """Start buying `pack` for `customer`; the returned checkout has the `url` to send them to.

    Commits the Checkout row first, then (Stripe) creates the session with the
    idempotency key `credits-checkout-<id>`, holding no lock; records session id and url.
    Raises ProviderError (Stripe refused or is unreachable; the checkout stays without url),
    ServiceUnavailable when there is no Stripe key and the mock provider is off.
    """
    if not settings.STRIPE_SECRET_KEY and not settings.MOCK_PROVIDER_ENABLED:
        raise ServiceUnavailable("Credit checkout is disabled: STRIPE_SECRET_KEY is not configured.")
    with transaction.atomic():
        checkout = Checkout.objects.create(
            merchant_id=customer.merchant_id,
            customer=customer,
            pack=pack,
            provider="stripe" if settings.STRIPE_SECRET_KEY else "mock",
            success_url=success_url,
            cancel_url=cancel_url,
        )
    if checkout.provider == "mock":
        checkout.session_id = f"cs_mock_{checkout.pk.hex}"
        checkout.url = reverse("credits-mock-checkout", args=[checkout.pk])
    else:
        try:
            session = _client().v1.checkout.sessions.create(
                _stripe_params(checkout), {"idempotency_key": f"credits-checkout-{checkout.pk}"}
            )
        except stripe.StripeError as exc:
            raise ProviderError(f"Stripe could not create the checkout session: {exc.user_message or exc}") from exc
        checkout.session_id, checkout.url = session.id, session.url or ""
    Checkout.objects.filter(pk=checkout.pk).update(session_id=checkout.session_id, url=checkout.url)
    return checkout


def mock_checkout_event(checkout: Checkout) -> bytes:
    """The checkout.session.completed Stripe would send for this checkout (one event id
    per checkout: a second click is the same event, granted once)."""
    pack = checkout.pack
    return json.dumps(
        {
            "id": f"evt_mock_{checkout.pk.hex}",
            "object": "event",
            "api_version": "2026-08-26.dahlia",
            "created": int(time.time()),
            "livemode": False,
            "pending_webhooks": 1,
            "request": {"id": None, "idempotency_key": None},
            "type": "checkout.session.completed",
            "data": {
                "object": {
                    "id": checkout.session_id,
                    "object": "checkout.session",
                    "mode": "payment",
                    "status": "complete",
                    "payment_status": "paid",
                    "amount_total": pack.price_amount,
                    "currency": pack.currency,
                    "client_reference_id": str(checkout.customer_id),
                    "customer": checkout.customer.stripe_customer_id or None,
                    "invoice": None,
                    "subscription": None,
                    "metadata": checkout_metadata(checkout),
                    "payment_intent": f"pi_mock_{checkout.pk.hex}",
                    "success_url": checkout.success_url,
                    "cancel_url": checkout.cancel_url,
                    "livemode": False,
                }
            },
        }
    ).encode()


def mock_checkout_complete(*, checkout: Checkout) -> None:
    """Send the mock session's completion through webhooks.inbound.receive_stripe, signed
    with the first STRIPE_WEBHOOK_SECRET (unsigned without one: accepted only with DEBUG).
    Raises InvalidRequest / ServiceUnavailable as receive_stripe does."""
    from webhooks.inbound import receive_stripe, stripe_webhook_secrets
    from webhooks.signing import sign

    body = mock_checkout_event(checkout)
    headers = {"Content-Type": "application/json", "User-Agent": "Paydesk-MockStripe/1.0"}
    secrets = stripe_webhook_secrets()
    if secrets:
        headers["Stripe-Signature"] = sign(body, secrets[0], timestamp=int(time.time()))
    receive_stripe(body=body, headers=headers)
    Checkout.objects.filter(pk=checkout.pk).update(status=Checkout.Status.COMPLETE)
