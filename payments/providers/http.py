"""A generic payment-link provider over HTTP (as a merchant payments service would use):

    POST {HTTP_PROVIDER_URL}/payments  {"reference", "amount", "currency", "return_url",
                                       "notify_url", "idempotency_key"} → {"id", "payment_url"}
    GET  {HTTP_PROVIDER_URL}/payments/{id}                 → {"status"}
    POST {HTTP_PROVIDER_URL}/payments/{id}/refunds {"amount", "idempotency_key"} → {"id", "status"}
    POST {HTTP_PROVIDER_URL}/payments/{id}/cancel                                  (best effort)
    POST {HTTP_PROVIDER_URL}/charges {"customer", "payment_method", "amount", "currency",
                                      "idempotency_key"} → {"id", "status", "failure_reason"?}
    GET  {HTTP_PROVIDER_URL}/charges/{id}                  → {"id", "status", "failure_reason"?}

A charge's status is succeeded/paid, pending/processing, or anything else (failed).

Every call has a timeout (HTTP_PROVIDER_TIMEOUT). Its notifications come to
/api/v1/payments/webhook signed with HTTP_WEBHOOK_SECRET.
"""

import requests
from django.conf import settings
from django.urls import reverse

from .base import (
    CreatedPayment,
    OffSessionResult,
    PaymentProvider,
    ProviderDeclined,
    ProviderUnavailable,
    RefundResult,
    register,
)


def http_send(
    method: str,
    url: str,
    *,
    timeout: float,
    label: str,
    headers: dict | None = None,
    json: dict | None = None,
    params: dict | None = None,
) -> requests.Response:
    """One HTTP call to a provider, with a timeout. Network trouble (no connection, a
    timeout) raises ProviderUnavailable with a clean message; requests' own text (hosts,
    ports, connection pools) goes to `detail` only. Any answer is returned as it is: what
    its status means is the provider's to say (Khalti answers a canceled lookup with a 400
    and a body worth reading). `label` names the call in `detail` ("GET /payments/1")."""
    try:
        return requests.request(method, url, json=json, params=params, headers=headers or {}, timeout=timeout)
    except requests.RequestException as exc:
        raise ProviderUnavailable(
            f"The payment provider could not be reached ({_network_trouble(exc)}).",
            detail=f"{label}: {type(exc).__name__}: {exc}",
        ) from exc


def _request(method: str, path: str, body: dict | None = None, idempotency_key: str | None = None) -> dict:
    headers = {"Authorization": f"Bearer {settings.HTTP_PROVIDER_API_KEY}"} if settings.HTTP_PROVIDER_API_KEY else {}
    if idempotency_key:
        headers["Idempotency-Key"] = idempotency_key
    response = http_send(
        method,
        settings.HTTP_PROVIDER_URL.rstrip("/") + path,
        json=body,
        headers=headers,
        timeout=settings.HTTP_PROVIDER_TIMEOUT,
        label=f"{method} {path}",
    )
    detail = f"{method} {path}: HTTP {response.status_code}: {response.text[:500]}"
    if response.status_code >= 500:
        raise ProviderUnavailable(f"The payment provider answered {response.status_code}.", detail=detail)
    if response.status_code >= 400:
        raise ProviderDeclined(f"The payment provider refused the request ({response.status_code}).", detail=detail)
    try:
        return response.json()
    except ValueError as exc:
        raise ProviderUnavailable(
            "The payment provider answered with something that is not JSON.", detail=detail
        ) from exc


def _network_trouble(exc: requests.RequestException) -> str:
    if isinstance(exc, requests.Timeout):
        return "timeout"
    if isinstance(exc, requests.ConnectionError):
        return "connection failed"
    return "request error"


@register
class HttpProvider(PaymentProvider):
    name = "http"

    def is_available(self) -> bool:
        return bool(settings.HTTP_PROVIDER_URL)

    def create_payment(self, *, payment, idempotency_key: str) -> CreatedPayment:
        body = _request(
            "POST",
            "/payments",
            {
                "reference": str(payment.pk),
                "amount": payment.amount,
                "currency": payment.currency,
                "return_url": payment.return_url,
                "notify_url": settings.PUBLIC_BASE_URL.rstrip("/") + reverse("provider-webhook"),
                "idempotency_key": idempotency_key,
            },
            idempotency_key,
        )
        if not body.get("id") or not body.get("payment_url"):
            raise ProviderUnavailable(
                "The payment provider's answer has no id or payment_url.",
                detail=f"POST /payments answered {body!r}"[:500],
            )
        return CreatedPayment(provider_payment_id=str(body["id"]), payment_url=str(body["payment_url"]))

    def retrieve_status(self, *, payment) -> str:
        status = _request("GET", f"/payments/{payment.provider_payment_id}").get("status", "pending")
        return {"paid": "succeeded"}.get(status, status)

    def cancel_payment(self, *, payment) -> None:
        _request("POST", f"/payments/{payment.provider_payment_id}/cancel", {}, f"cancel-{payment.pk}")

    def refund(self, *, payment, amount: int, idempotency_key: str) -> RefundResult:
        body = _request(
            "POST",
            f"/payments/{payment.provider_payment_id}/refunds",
            {"amount": amount, "idempotency_key": idempotency_key},
            idempotency_key,
        )
        return RefundResult(provider_refund_id=str(body.get("id", "")), status=body.get("status", "pending"))

    def charge_off_session(
        self, *, customer, amount: int, currency: str, idempotency_key: str, description: str, metadata: dict
    ) -> OffSessionResult:
        if not customer.payment_method:
            raise ProviderDeclined("The customer has no saved payment method.")
        body = _request(
            "POST",
            "/charges",
            {
                "customer": str(customer.pk),
                "payment_method": customer.payment_method,
                "amount": amount,
                "currency": currency,
                "idempotency_key": idempotency_key,
            },
            idempotency_key,
        )
        return _charge_result(body)

    def retrieve_charge(self, *, provider_charge_id: str) -> OffSessionResult:
        return _charge_result(_request("GET", f"/charges/{provider_charge_id}"))


def _charge_result(body: dict) -> OffSessionResult:
    status = {"succeeded": "succeeded", "paid": "succeeded", "pending": "pending", "processing": "pending"}.get(
        body.get("status"), "failed"
    )
    return OffSessionResult(
        provider_payment_id=str(body.get("id", "")),
        status=status,
        failure_reason="" if status != "failed" else str(body.get("failure_reason") or body.get("status")),
    )
