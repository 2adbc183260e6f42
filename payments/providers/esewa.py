"""eSewa ePay v2 (https://developer.esewa.com.np/pages/Epay), for NPR.

There is no server call to start a payment: the payer's browser posts a signed form to
eSewa ({ESEWA_BASE_URL}/api/epay/main/v2/form). Its `payment_url` is therefore a Paydesk
page (/pay/esewa/<id>, payments/nepal_checkout.py) that posts that form by itself.

- The form's signature is HMAC-SHA256 with ESEWA_SECRET_KEY, base64, over
  "total_amount=<..>,transaction_uuid=<..>,product_code=<..>", the fields named in
  `signed_field_names`, in that order.
- Amounts are rupee strings, converted exactly from paisa: "100" for 10000, "100.50" for
  10050 (rupees(); the form, its signature and the status check all use that one string).
- After paying, eSewa sends the payer to success_url with `?data=<base64 JSON>`, signed
  the same way over its own `signed_field_names`. Paydesk checks that signature and that
  the data is this payment's, but the payment moves only on eSewa's status check
  ({ESEWA_BASE_URL}/api/epay/transaction/status/?product_code=&total_amount=&transaction_uuid=),
  which reconciliation asks too.
- ePay v2 has no refund or cancel API: refunds are refused up front (refunds go through
  eSewa's merchant portal) and a canceled payment's page stops posting the form.

`transaction_uuid` (eSewa: alphanumeric and hyphens, unique per request) is the
payment's id, and is its provider_payment_id.
"""

import base64
import binascii
import hashlib
import hmac
import json
from decimal import Decimal, InvalidOperation

from django.conf import settings
from django.urls import reverse

from config.errors import InvalidRequest

from .base import (
    CreatedPayment,
    OffSessionResult,
    PaymentProvider,
    ProviderDeclined,
    ProviderStatus,
    ProviderUnavailable,
    RefundResult,
    register,
)
from .http import http_send

FORM_PATH = "/api/epay/main/v2/form"
STATUS_PATH = "/api/epay/transaction/status/"
TIMEOUT_SECONDS = 10.0
SIGNED_FIELD_NAMES = "total_amount,transaction_uuid,product_code"
# What the success data must sign for Paydesk to read it at all.
RETURN_SIGNED_REQUIRED = frozenset({"transaction_code", "status", "total_amount", "transaction_uuid", "product_code"})

# The status check's answers (its documented "Response Types") → ours.
# NOT_FOUND ("Payment terminated at eSewa: Session expired") is also what eSewa says
# about a payment the payer has not started yet: it stays pending, and reconciliation
# expires it after PAYMENT_EXPIRE_AFTER_SECONDS like any payment left unpaid.
STATUS = {
    "COMPLETE": "succeeded",
    "PENDING": "pending",
    "AMBIGUOUS": "pending",  # "at halt state": eSewa itself does not know yet
    "NOT_FOUND": "pending",
    "CANCELED": "canceled",  # "Canceled/Reversed from eSewa side"
    "FULL_REFUND": "succeeded",  # collected, then refunded at eSewa: booked, then its refund recorded
    "PARTIAL_REFUND": "succeeded",
}
REFUNDED = {"FULL_REFUND": "full", "PARTIAL_REFUND": "partial"}


class EsewaDataInvalid(Exception):
    """Return data that is not eSewa's for this payment. Its str() says why, for the log."""


def rupees(amount: int) -> str:
    """Paisa as eSewa's rupee string, exactly: 10000 → "100", 10050 → "100.50"."""
    if amount < 0:
        raise ValueError("negative amount")
    whole, paisa = divmod(amount, 100)
    return str(whole) if not paisa else f"{whole}.{paisa:02d}"


def paisa(value) -> int | None:
    """A rupee amount as eSewa writes it back ("1000.0", "1,000.0", 100.0, "100") in
    paisa, or None when it is not an exact amount of paisa."""
    text = str(value).replace(",", "").strip()
    try:
        amount = Decimal(text) * 100
    except InvalidOperation:
        return None
    if not amount.is_finite() or amount != amount.to_integral_value() or amount < 0:
        return None
    return int(amount)


def signature(message: str, secret: str) -> str:
    return base64.b64encode(hmac.new(secret.encode(), message.encode(), hashlib.sha256).digest()).decode()


def sign_fields(fields: dict, secret: str) -> str:
    """The signature of `fields` over its signed_field_names, in their order."""
    names = fields["signed_field_names"].split(",")
    return signature(",".join(f"{name}={fields[name]}" for name in names), secret)


def form_url() -> str:
    return settings.ESEWA_BASE_URL.rstrip("/") + FORM_PATH


def form_fields(payment) -> dict:
    """The signed form the payer's browser posts to eSewa for `payment`, in eSewa's field order."""
    base = settings.PUBLIC_BASE_URL.rstrip("/")
    total = rupees(payment.amount)
    fields = {
        "amount": total,
        "tax_amount": "0",
        "total_amount": total,
        "transaction_uuid": payment.provider_payment_id or str(payment.pk),
        "product_code": settings.ESEWA_PRODUCT_CODE,
        "product_service_charge": "0",
        "product_delivery_charge": "0",
        # Bare paths: eSewa appends "?data=..." whatever the URL already holds.
        "success_url": base + reverse("esewa-return", args=[payment.pk]),
        "failure_url": base + reverse("esewa-failure", args=[payment.pk]),
        "signed_field_names": SIGNED_FIELD_NAMES,
    }
    fields["signature"] = sign_fields(fields, settings.ESEWA_SECRET_KEY)
    return fields


def decode_return_data(data: str) -> dict:
    """eSewa's success data (base64 JSON), its signature checked. Numbers keep the text
    eSewa wrote ("1000.0"): that text is what it signed. Raises EsewaDataInvalid."""
    if not data or len(data) > 4096:
        raise EsewaDataInvalid("no data, or too much")
    # A "+" left unescaped in the query string reads back as a space.
    text = data.strip().replace(" ", "+")
    try:
        raw = base64.b64decode(text + "=" * (-len(text) % 4), validate=True)
        fields = json.loads(raw, parse_float=str, parse_int=str, parse_constant=str)
    except (binascii.Error, ValueError) as exc:
        raise EsewaDataInvalid(f"not base64 JSON ({type(exc).__name__})") from exc
    if not isinstance(fields, dict):
        raise EsewaDataInvalid("not a JSON object")
    names = fields.get("signed_field_names")
    given = fields.get("signature")
    if not isinstance(names, str) or not isinstance(given, str):
        raise EsewaDataInvalid("no signed_field_names or signature")
    listed = names.split(",")
    if not RETURN_SIGNED_REQUIRED <= set(listed):
        raise EsewaDataInvalid(f"signed_field_names leaves out {sorted(RETURN_SIGNED_REQUIRED - set(listed))}")
    if any(not isinstance(fields.get(name), str) for name in listed):
        raise EsewaDataInvalid("a signed field is missing or not a plain value")
    if not hmac.compare_digest(sign_fields(fields, settings.ESEWA_SECRET_KEY), given):
        raise EsewaDataInvalid("bad signature")
    return fields


def return_data_mismatch(fields: dict, payment) -> dict:
    """What in eSewa's (verified) success data is not this payment's: {field: (got, expected)}."""
    expected = {
        "transaction_uuid": payment.provider_payment_id,
        "product_code": settings.ESEWA_PRODUCT_CODE,
        "total_amount": payment.amount,
    }
    got = {**fields, "total_amount": paisa(fields["total_amount"])}
    return {name: (got[name], want) for name, want in expected.items() if got[name] != want}


@register
class EsewaProvider(PaymentProvider):
    name = "esewa"
    supports_refunds = False
    refunds_unsupported_message = (
        "eSewa ePay has no refund API: refund this payment from the eSewa merchant portal "
        "(merchant.esewa.com.np); Paydesk cannot."
    )

    def is_available(self) -> bool:
        return bool(settings.ESEWA_SECRET_KEY and settings.ESEWA_PRODUCT_CODE and settings.ESEWA_BASE_URL)

    def validate_payment(self, *, amount: int, currency: str) -> None:
        if currency.lower() != "npr":
            raise InvalidRequest("eSewa takes NPR payments only.", param="currency")

    def create_payment(self, *, payment, idempotency_key: str) -> CreatedPayment:
        # Nothing to ask eSewa: the payer's browser posts the signed form from Paydesk's page.
        url = settings.PUBLIC_BASE_URL.rstrip("/") + reverse("esewa-checkout", args=[payment.pk])
        return CreatedPayment(provider_payment_id=str(payment.pk), payment_url=url)

    def retrieve_outcome(self, *, payment) -> ProviderStatus:
        total = rupees(payment.amount)
        query = {
            "product_code": settings.ESEWA_PRODUCT_CODE,
            "total_amount": total,
            "transaction_uuid": payment.provider_payment_id,
        }
        response = http_send(
            "GET",
            settings.ESEWA_BASE_URL.rstrip("/") + STATUS_PATH,
            params=query,
            timeout=TIMEOUT_SECONDS,
            label=f"GET {STATUS_PATH}",
        )
        detail = f"GET {STATUS_PATH}: HTTP {response.status_code}: {response.text[:500]}"
        try:
            body = json.loads(response.text, parse_float=Decimal)
        except ValueError:
            body = None
        if response.status_code >= 500 or not isinstance(body, dict):
            raise ProviderUnavailable(f"eSewa's status check answered {response.status_code}.", detail=detail)
        if "error_message" in body or "status" not in body:
            # {"code": 0, "error_message": "Service is currently unavailable"}
            if response.status_code >= 400:
                raise ProviderDeclined(
                    f"eSewa's status check refused the request ({response.status_code}).", detail=detail
                )
            raise ProviderUnavailable("eSewa's status check is unavailable.", detail=detail)
        state = str(body["status"])
        if state not in STATUS:
            # Not one eSewa documents: hold the payment, never guess.
            raise ProviderUnavailable(f"eSewa's status check answered an unknown status {state[:40]!r}.", detail=detail)
        if str(body.get("transaction_uuid")) != payment.provider_payment_id:
            raise ProviderUnavailable("eSewa's status check answered about another transaction.", detail=detail)
        amount = paisa(body["total_amount"]) if body.get("total_amount") is not None else None
        if STATUS[state] == "succeeded" and amount is None:
            raise ProviderUnavailable("eSewa's status check says COMPLETE but gives no amount: held.", detail=detail)
        return ProviderStatus(
            status=STATUS[state],
            # Collected money is checked against the payment; NOT_FOUND and PENDING only echo the query.
            amount=amount if STATUS[state] == "succeeded" else None,
            currency="npr" if STATUS[state] == "succeeded" else None,
            refunded=REFUNDED.get(state, ""),
            reason="eSewa: CANCELED (canceled or reversed at eSewa)" if state == "CANCELED" else "",
            data={"esewa_status": state, "ref_id": body.get("ref_id")},
        )

    def retrieve_status(self, *, payment) -> str:
        return self.retrieve_outcome(payment=payment).status

    def cancel_payment(self, *, payment) -> None:
        """ePay v2 has no cancel API. The checkout page stops posting the form once the
        payment is no longer pending; a payment made anyway is flagged when found."""

    def refund(self, *, payment, amount: int, idempotency_key: str) -> RefundResult:
        # Reached only by an automatic refund (a payment collected after it was closed):
        # refused, so the refund is flagged for staff to make in eSewa's portal.
        raise ProviderDeclined(self.refunds_unsupported_message)

    def charge_off_session(
        self, *, customer, amount: int, currency: str, idempotency_key: str, description: str, metadata: dict
    ) -> OffSessionResult:
        raise ProviderDeclined("eSewa cannot charge a saved payment method: the payer pays on eSewa's page.")

    def retrieve_charge(self, *, provider_charge_id: str) -> OffSessionResult:
        raise ProviderDeclined("eSewa makes no off-session charges.")
