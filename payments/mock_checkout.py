"""The mock provider's checkout page. "Pay" and "Decline" send the provider's signed
notification through exactly the path a real provider's takes (verify with
MOCK_WEBHOOK_SECRET, store, process); the page itself changes nothing, and neither
does the redirect to the merchant's return_url afterwards. A 404, GET and POST alike,
unless MOCK_PROVIDER_ENABLED."""

import json
import time

from django.conf import settings
from django.http import Http404, HttpResponseRedirect
from django.shortcuts import render
from django.views.decorators.http import require_http_methods

from config.errors import DomainError
from payments.models import MockCheckout, Payment
from webhooks.api import receive_provider_notification
from webhooks.signing import sign


def _checkout(payment_id) -> MockCheckout:
    if not settings.MOCK_PROVIDER_ENABLED:  # as if the page did not exist: no hint for a prober
        raise Http404("No such mock checkout.")
    checkout = MockCheckout.objects.select_related("payment__merchant").filter(payment_id=payment_id).first()
    if checkout is None:
        raise Http404("No such mock checkout.")
    return checkout


DECLINED_REASON = "Declined by the payer on the mock checkout page."


def _notify(checkout: MockCheckout, status: str) -> None:
    payment: Payment = checkout.payment
    notification = {
        "provider": "mock",
        "provider_payment_id": checkout.provider_payment_id,
        "status": status,
        "amount": payment.amount,
        "currency": payment.currency,
    }
    if status == "failed":
        notification["failure_reason"] = DECLINED_REASON
    body = json.dumps(notification).encode()
    header = sign(body, settings.MOCK_WEBHOOK_SECRET.split(",")[0], timestamp=int(time.time()))
    receive_provider_notification(
        body=body,
        headers={
            "X-Paydesk-Signature": header,
            "Content-Type": "application/json",
            "User-Agent": "Paydesk-MockProvider/1.0",
        },
    )


@require_http_methods(["GET", "POST"])
def mock_checkout(request, payment_id):
    checkout = _checkout(payment_id)
    payment = checkout.payment
    error = None
    if request.method == "POST":
        action = request.POST.get("action")
        if action not in ("pay", "decline"):
            error = "Choose Pay or Decline."
        elif checkout.status != "pending":
            error = f"This checkout was already {checkout.status}."
        else:
            checkout.status = "paid" if action == "pay" else "failed"
            checkout.save(update_fields=["status", "updated_at"])
            try:
                _notify(checkout, checkout.status)
            except DomainError as exc:  # e.g. no MOCK_WEBHOOK_SECRET with DEBUG off
                error = f"The notification was refused: {exc.message}"
            else:
                if payment.return_url:
                    return HttpResponseRedirect(payment.return_url)
        payment.refresh_from_db()
    return render(
        request,
        "payments/mock_checkout.html",
        {"payment": payment, "checkout": checkout, "error": error},
        status=400 if error else 200,
    )
