"""Khalti web checkout, KPG-2 (https://docs.khalti.com/khalti-epayment/), for NPR.

    POST {KHALTI_BASE_URL}epayment/initiate/  {return_url, website_url, amount (paisa),
         purchase_order_id, purchase_order_name}       → {pidx, payment_url, expires_at, expires_in}
    POST {KHALTI_BASE_URL}epayment/lookup/    {pidx}   → {pidx, total_amount, status,
         transaction_id, fee, refunded}
    POST {KHALTI_BASE_URL without "v2/"}merchant-transaction/<transaction_id>/refund/
         {} (full) or {"amount": paisa} (partial)      → {"detail": "Transaction refund successful."}

Every call carries `Authorization: Key <KHALTI_SECRET_KEY>` and a timeout. The payer is
sent to Khalti's payment_url, and back to Paydesk's /pay/khalti/<id>/return with the
pidx and a status in the query: only the lookup decides (Khalti: "Only the status with
Completed must be treated as success"), and reconciliation asks the same lookup.
The lookup answers Expired and User canceled with HTTP 400 and the usual body.

Khalti takes no idempotency key. Initiating again after a crash makes a second pidx,
which nobody can pay (its payment_url was never handed out). A refund is looked up
first, so one whose earlier attempt went through is recorded, not sent again (refund()).
"""

import json
from decimal import Decimal
from urllib.parse import urlsplit

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

TIMEOUT_SECONDS = 10.0
MINIMUM_AMOUNT = 1000  # paisa (NPR 10): Khalti refuses less ("... that is 1000 paisa")

# Lookup statuses → ours. "Pending": Khalti says hold it and ask them; Initiated: the
# payer has not paid (yet). Anything not listed is held too, as Khalti asks.
STATUS = {
    "Completed": "succeeded",
    "Pending": "pending",
    "Initiated": "pending",
    "User canceled": "canceled",
    "Expired": "expired",
    "Failed": "failed",
    "Refunded": "succeeded",  # collected, then refunded at Khalti: booked, then its refund recorded
    "Partially Refunded": "succeeded",
    "Partially refunded": "succeeded",
}
REFUNDED = {"Refunded": "full", "Partially Refunded": "partial", "Partially refunded": "partial"}


def _url(path: str) -> str:
    return settings.KHALTI_BASE_URL.rstrip("/") + "/" + path


def _paisa(value) -> int | None:
    """Khalti's total_amount (integer paisa; a digit string is read too), else None."""
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, str) and value.isdigit():
        return int(value)
    return None


def _refund_url(transaction_id: str) -> str:
    # The refund API sits beside the versioned epayment API: .../api/merchant-transaction/...
    base = settings.KHALTI_BASE_URL.rstrip("/")
    if base.endswith("/v2"):
        base = base[: -len("/v2")]
    return f"{base}/merchant-transaction/{transaction_id}/refund/"


def _post(url: str, body: dict, label: str):
    """POST to Khalti; (status code, JSON body or None). Network trouble and 5xx raise
    ProviderUnavailable, a refused key ProviderDeclined; other answers are the caller's."""
    response = http_send(
        "POST",
        url,
        json=body,
        headers={"Authorization": f"Key {settings.KHALTI_SECRET_KEY}"},
        timeout=TIMEOUT_SECONDS,
        label=label,
    )
    detail = f"{label}: HTTP {response.status_code}: {response.text[:500]}"
    try:
        payload = json.loads(response.text, parse_float=Decimal)
    except ValueError:
        payload = None
    if response.status_code >= 500 or response.status_code == 429:
        raise ProviderUnavailable(f"Khalti answered {response.status_code}.", detail=detail)
    if response.status_code in (401, 403):
        raise ProviderDeclined("Khalti refused Paydesk's credentials (KHALTI_SECRET_KEY).", detail=detail)
    if not isinstance(payload, dict):
        raise ProviderUnavailable("Khalti answered with something that is not a JSON object.", detail=detail)
    return response.status_code, payload, detail


def _refused(what: str, payload: dict, detail: str) -> ProviderDeclined:
    """Khalti's validation error, by the fields it names (never their values, which may
    echo what was sent)."""
    fields = sorted(key for key in payload if key not in ("error_key", "detail", "status_code"))
    said = f" ({', '.join(fields)})" if fields else ""
    return ProviderDeclined(f"Khalti refused the {what}{said}.", detail=detail)


@register
class KhaltiProvider(PaymentProvider):
    name = "khalti"

    def is_available(self) -> bool:
        return bool(settings.KHALTI_SECRET_KEY and settings.KHALTI_BASE_URL)

    def validate_payment(self, *, amount: int, currency: str) -> None:
        if currency.lower() != "npr":
            raise InvalidRequest("Khalti takes NPR payments only.", param="currency")
        if amount < MINIMUM_AMOUNT:
            raise InvalidRequest(f"Khalti takes payments of at least {MINIMUM_AMOUNT} paisa (NPR 10).", param="amount")

    def create_payment(self, *, payment, idempotency_key: str) -> CreatedPayment:
        base = settings.PUBLIC_BASE_URL.rstrip("/")
        site = urlsplit(payment.return_url or base)
        body = {
            "return_url": base + reverse("khalti-return", args=[payment.pk]),
            "website_url": f"{site.scheme}://{site.netloc}",
            "amount": payment.amount,
            "purchase_order_id": str(payment.pk),
            "purchase_order_name": (payment.description or f"Order {payment.order_id}")[:100],
        }
        status, payload, detail = _post(_url("epayment/initiate/"), body, "POST epayment/initiate/")
        if status >= 400:
            raise _refused("payment", payload, detail)
        if not payload.get("pidx") or not payload.get("payment_url"):
            raise ProviderUnavailable("Khalti's answer has no pidx or payment_url.", detail=detail)
        return CreatedPayment(provider_payment_id=str(payload["pidx"]), payment_url=str(payload["payment_url"]))

    def lookup(self, *, pidx: str) -> dict:
        """Khalti's lookup of `pidx` (its body), whatever the payment's state."""
        status, payload, detail = _post(_url("epayment/lookup/"), {"pidx": pidx}, "POST epayment/lookup/")
        if "status" not in payload:
            if status >= 400:  # {"detail": "Not found.", "error_key": "validation_error"}
                raise ProviderDeclined("Khalti does not know this payment (pidx).", detail=detail)
            raise ProviderUnavailable("Khalti's lookup answer has no status.", detail=detail)
        if str(payload.get("pidx")) != pidx:
            raise ProviderUnavailable("Khalti's lookup answered about another payment.", detail=detail)
        return payload

    def retrieve_outcome(self, *, payment) -> ProviderStatus:
        payload = self.lookup(pidx=payment.provider_payment_id)
        state = str(payload["status"])
        if state not in STATUS:
            raise ProviderUnavailable(
                f"Khalti's lookup answered a status Paydesk does not know ({state[:40]!r}): held."
            )
        ours = STATUS[state]
        amount = _paisa(payload.get("total_amount"))
        if ours == "succeeded" and amount is None:
            raise ProviderUnavailable("Khalti's lookup says Completed but gives no total_amount: held.")
        return ProviderStatus(
            status=ours,
            amount=amount if ours == "succeeded" else None,
            currency="npr" if ours == "succeeded" else None,
            refunded=REFUNDED.get(state, ""),
            reason=f"Khalti: {state}" if ours in ("failed", "canceled", "expired") else "",
            data={"khalti_status": state, "transaction_id": payload.get("transaction_id")},
        )

    def retrieve_status(self, *, payment) -> str:
        return self.retrieve_outcome(payment=payment).status

    def cancel_payment(self, *, payment) -> None:
        """KPG-2 has no cancel API; its payment link expires by itself (60 minutes in
        production). A payment made anyway is booked and refunded when it is found."""

    def refund(self, *, payment, amount: int, idempotency_key: str) -> RefundResult:
        """Refund `amount` of the payment at Khalti. Khalti's refund takes no idempotency
        key, so the lookup is asked first: a payment Khalti already shows refunded while
        Paydesk has recorded no provider refund of it is an earlier attempt of this one
        that went through (a timeout): recorded as done, not sent twice. (Once Paydesk has
        recorded one partial refund, a later partial one cannot be told apart this way.)"""
        from payments.models import Refund  # the models import the providers package

        payload = self.lookup(pidx=payment.provider_payment_id)
        state = str(payload["status"])
        transaction_id = str(payload.get("transaction_id") or "")
        recorded = (
            Refund.objects.filter(payment_id=payment.pk, status=Refund.Status.SUCCEEDED, provider_amount__gt=0)
            .exclude(provider_refund_id="")
            .exists()
        )
        if state in REFUNDED and not recorded:
            return RefundResult(provider_refund_id=f"khalti:{transaction_id}", status="succeeded")
        if state == "Refunded":
            raise ProviderDeclined("Khalti shows this payment already refunded in full.")
        if state not in ("Completed", "Partially Refunded", "Partially refunded") or not transaction_id:
            raise ProviderDeclined(f"Khalti cannot refund a payment that is {state[:40]!r} there.")
        body = {} if amount >= payment.amount else {"amount": amount}
        status, result, detail = _post(_refund_url(transaction_id), body, "POST merchant-transaction/<id>/refund/")
        if status >= 400:
            raise _refused("refund", result, detail)
        return RefundResult(provider_refund_id=f"khalti:{transaction_id}", status="succeeded")

    def charge_off_session(
        self, *, customer, amount: int, currency: str, idempotency_key: str, description: str, metadata: dict
    ) -> OffSessionResult:
        raise ProviderDeclined("Khalti cannot charge a saved payment method: the payer pays on Khalti's page.")

    def retrieve_charge(self, *, provider_charge_id: str) -> OffSessionResult:
        raise ProviderDeclined("Khalti makes no off-session charges.")
