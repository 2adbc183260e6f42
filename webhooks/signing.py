"""The `t=<unix>,v1=<hex HMAC-SHA256 of "<t>.<body>">` scheme, shared by Stripe's
Stripe-Signature, providers' X-Paydesk-Signature and our outbound Paydesk-Signature.
Verification is stripe-python's own (several v1 values, constant-time compare,
tolerance); we only add trying more than one secret, for rotation."""

import stripe
from stripe import SignatureVerificationError

__all__ = ["SignatureVerificationError", "sign", "verify"]


def sign(body: str | bytes, secret: str, timestamp: int | None = None) -> str:
    if isinstance(body, bytes):
        body = body.decode("utf-8")
    return stripe.WebhookSignature.generate_signature_header(body, secret, timestamp=timestamp)


def verify(body: str | bytes, header: str | None, secrets: list[str], tolerance: int, *, header_name: str) -> None:
    """Raise SignatureVerificationError unless `header` (the request's `header_name`) signs
    `body` with one of `secrets` within `tolerance` seconds. During a rotation both the old
    and the new secret work. A missing header is said in our words, naming the header:
    stripe-python's own message is advice for its library's callers, not for a sender."""
    if not secrets:
        raise SignatureVerificationError("No webhook secret is configured.", header, body)
    if not header:
        raise SignatureVerificationError(
            f"the {header_name} header is missing; send {header_name}: "
            't=<unix time>,v1=<hex HMAC-SHA256 of "<t>.<raw body>" with the webhook secret>.',
            header,
            body,
        )
    last: Exception | None = None
    for secret in secrets:
        try:
            stripe.WebhookSignature.verify_header(body, header, secret, tolerance)
            return
        except SignatureVerificationError as exc:
            last = exc
    raise last
