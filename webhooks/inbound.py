"""Receiving provider events: verify the signature on the raw bytes, check the shape,
store once, acknowledge fast, process in a task (webhooks.services)."""

import hashlib
import logging
import os
import re

from django.conf import settings

from config.api.parsers import json_loads
from config.errors import InvalidRequest, ServiceUnavailable

from .models import InboundEvent
from .services import inbound_event_enqueue, inbound_event_record
from .signing import SignatureVerificationError, verify

logger = logging.getLogger("paydesk.webhooks")

KEPT_HEADERS = ("Content-Type", "User-Agent", "Stripe-Signature", "X-Paydesk-Signature", "X-Request-Id")
PROVIDER_NAME = re.compile(r"^[a-z][a-z0-9_]{0,29}$")
SECRET_SUFFIX = "_WEBHOOK_SECRET"
# The stored columns' sizes (InboundEvent.event_id, .type): longer is refused, not truncated.
EVENT_ID_MAX = InboundEvent._meta.get_field("event_id").max_length
EVENT_TYPE_MAX = InboundEvent._meta.get_field("type").max_length


def _secrets(raw: str) -> list[str]:
    """A secret, or several comma-separated while one is being rotated out."""
    return [s.strip() for s in (raw or "").split(",") if s.strip()]


def stripe_webhook_secrets() -> list[str]:
    return _secrets(settings.STRIPE_WEBHOOK_SECRET)


def provider_webhook_secrets(provider: str) -> list[str]:
    """`<PROVIDER>_WEBHOOK_SECRET` from settings (MOCK_, HTTP_) or else the environment."""
    name = f"{provider.upper()}{SECRET_SUFFIX}"
    return _secrets(getattr(settings, name, None) or os.environ.get(name, ""))


def provider_webhook_signers() -> dict[str, list[str]]:
    """Every non-Stripe provider with a webhook secret, by name: each setting or
    environment variable `<PROVIDER>_WEBHOOK_SECRET` names one."""
    names = {n for n in dir(settings) if n.endswith(SECRET_SUFFIX)}
    names |= {n for n in os.environ if n.endswith(SECRET_SUFFIX)}
    signers = {}
    for name in sorted(names):
        provider = name[: -len(SECRET_SUFFIX)].lower()
        if provider != "stripe" and PROVIDER_NAME.match(provider) and (secrets := provider_webhook_secrets(provider)):
            signers[provider] = secrets
    return signers


def _too_large() -> InvalidRequest:
    return InvalidRequest(f"The body is larger than {settings.WEBHOOK_MAX_BODY_BYTES} bytes.")


def request_body(request) -> bytes:
    """The raw body, refused (400) by its Content-Length before anything is read when it
    is over WEBHOOK_MAX_BODY_BYTES. (Reading it first would also make Django raise
    RequestDataTooBig past DATA_UPLOAD_MAX_MEMORY_SIZE.)"""
    try:
        declared = int(request.META.get("CONTENT_LENGTH") or 0)
    except ValueError:
        raise InvalidRequest("The Content-Length header is not a number.")
    if declared > settings.WEBHOOK_MAX_BODY_BYTES:
        raise _too_large()
    return request.body


def _text(body: bytes) -> str:
    """Size-checked UTF-8 text of the body: JSON is UTF-8, and verifying a signature or
    storing the raw body needs text."""
    if len(body) > settings.WEBHOOK_MAX_BODY_BYTES:
        raise _too_large()
    try:
        return body.decode("utf-8")
    except UnicodeDecodeError:
        raise InvalidRequest("The body is not UTF-8 text.")


def _json_object(text: str) -> dict:
    """The body as a JSON object, through the project's one bounded parser (size, nesting,
    no NaN, no NUL character anywhere: PostgreSQL cannot store one). Called only once the
    signature is verified, except for Stripe events accepted unverified in development."""
    payload = json_loads(text, max_bytes=settings.WEBHOOK_MAX_BODY_BYTES)
    if not isinstance(payload, dict):
        raise InvalidRequest("The body must be a JSON object.")
    return payload


def _kept_headers(headers) -> dict:
    return {h: headers[h].replace("\x00", "") for h in KEPT_HEADERS if h in headers}


def receive_stripe(*, body: bytes, headers) -> tuple[object, bool]:
    """Verify (Stripe-Signature, 300 s tolerance, any of the configured secrets), store,
    enqueue. Returns (event, created). Raises InvalidRequest (400) or ServiceUnavailable."""
    text = _text(body)
    secrets = stripe_webhook_secrets()
    verified = False
    if secrets:
        try:
            verify(
                text,
                headers.get("Stripe-Signature"),
                secrets,
                settings.WEBHOOK_TOLERANCE_SECONDS,
                header_name="Stripe-Signature",
            )
        except SignatureVerificationError as exc:
            logger.warning("stripe webhook refused: bad signature", extra={"reason": str(exc)[:200]})
            raise InvalidRequest(f"Signature verification failed: {exc}", param="Stripe-Signature")
        verified = True
    elif not settings.DEBUG:
        logger.error("stripe webhook refused: STRIPE_WEBHOOK_SECRET is not set and DEBUG is off")
        raise ServiceUnavailable("Stripe webhooks are disabled: STRIPE_WEBHOOK_SECRET is not configured.")
    payload = _json_object(text)
    event_id, event_type, data = payload.get("id"), payload.get("type"), payload.get("data")
    if not isinstance(event_id, str) or not event_id or not isinstance(event_type, str) or not event_type:
        raise InvalidRequest("A Stripe event needs a string `id` and `type`.", param="id")
    if len(event_id) > EVENT_ID_MAX:
        raise InvalidRequest(f"The event `id` is longer than {EVENT_ID_MAX} characters.", param="id")
    if len(event_type) > EVENT_TYPE_MAX:
        raise InvalidRequest(f"The event `type` is longer than {EVENT_TYPE_MAX} characters.", param="type")
    if not isinstance(data, dict) or not isinstance(data.get("object"), dict):
        raise InvalidRequest("A Stripe event needs `data.object`.", param="data")
    event, created = inbound_event_record(
        provider="stripe",
        event_id=event_id,
        type=event_type,
        payload=payload,
        raw_body=text,
        headers=_kept_headers(headers),
        verified=verified,
    )
    if created:
        inbound_event_enqueue(event)
    return event, created


def receive_provider(*, body: bytes, headers, validate) -> tuple[object, bool]:
    """A non-Stripe provider's notification (API.md: POST /api/v1/payments/webhook),
    signed with X-Paydesk-Signature and the provider's own secret. `validate(payload)`
    checks the body's shape (a DRF serializer in the view) and returns clean data.

    The signature is checked on the raw body before it is parsed, so an unsigned caller
    never reaches the JSON parser: against every provider's secret, since the body names
    the provider. The body's `provider` must then be one whose secret signed it."""
    text = _text(body)
    signers = provider_webhook_signers()
    if not signers:
        raise InvalidRequest("No provider webhook secret is configured.", param="provider")
    signed_by, failure = [], None
    for name, secrets in signers.items():
        try:
            verify(
                text,
                headers.get("X-Paydesk-Signature"),
                secrets,
                settings.WEBHOOK_TOLERANCE_SECONDS,
                header_name="X-Paydesk-Signature",
            )
            signed_by.append(name)
        except SignatureVerificationError as exc:
            failure = exc
    if not signed_by:
        logger.warning("provider webhook refused: bad signature", extra={"reason": str(failure)[:200]})
        raise InvalidRequest(f"Signature verification failed: {failure}", param="X-Paydesk-Signature")
    payload = _json_object(text)
    provider = payload.get("provider")
    if provider not in signed_by:
        raise InvalidRequest(
            "`provider` must name the non-Stripe provider whose webhook secret signed this notification.",
            param="provider",
        )
    data = validate(payload)
    # A provider may send its own event id; otherwise the notification's content is its
    # identity, so an identical repeat is recognised as the same event.
    event_id = (
        data.get("id")
        or hashlib.sha256(
            "|".join(str(data[k]) for k in ("provider_payment_id", "status", "amount", "currency")).encode()
        ).hexdigest()
    )
    event, created = inbound_event_record(
        provider=provider,
        event_id=event_id,
        type=f"payment.{data['status']}",
        payload=payload,
        raw_body=text,
        headers=_kept_headers(headers),
        verified=True,
    )
    if created:
        inbound_event_enqueue(event)
    return event, created
