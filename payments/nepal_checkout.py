"""The pages payers of Nepal's wallets pass through (payments/providers/esewa.py, khalti.py).

- /pay/esewa/<id>: eSewa's `payment_url`. Posts the signed ePay form to eSewa by itself
  while the payment is pending; shows its status otherwise.
- /pay/esewa/<id>/return and /failure: eSewa's success_url and failure_url.
- /pay/khalti/<id>/return: Khalti's return_url.

A return is only a hint that it is time to ask. eSewa's success data must carry a valid
signature and be this payment's (its transaction_uuid, product code and amount), and
Khalti's pidx must be this payment's; then Paydesk asks the provider's status API
(payment_check_with_provider) and that answer alone moves the payment. Forged or
mismatched return data is ignored: nothing is asked, nothing changes (data eSewa did sign
for something else is flagged for staff). The payer is then sent on to the merchant's
return_url, or shown the payment's status.
"""

import hmac
import logging

from django.http import Http404, HttpResponseRedirect
from django.shortcuts import render
from django.views.decorators.http import require_GET

from config.money_display import money
from payments.models import Payment
from payments.providers import esewa
from payments.services import payment_check_with_provider, payment_flag_provider_data

logger = logging.getLogger("paydesk.payments")


def _payment(payment_id, provider: str) -> Payment:
    payment = Payment.objects.select_related("merchant").filter(pk=payment_id, provider=provider).first()
    if payment is None:
        raise Http404("No such payment.")
    return payment


def _back_to_merchant(request, payment: Payment):
    """The merchant's return_url (which, like this page, decides nothing), else the status."""
    payment.refresh_from_db()
    if payment.return_url:
        return HttpResponseRedirect(payment.return_url)
    return render(
        request,
        "payments/provider_return.html",
        {"payment": payment, "amount": money(payment.amount, payment.currency)},
    )


@require_GET
def esewa_checkout(request, payment_id):
    payment = _payment(payment_id, "esewa")
    context = {"payment": payment, "amount": money(payment.amount, payment.currency)}
    if payment.status == "pending" and payment.provider_payment_id:
        context.update(action=esewa.form_url(), fields=esewa.form_fields(payment))
    return render(request, "payments/esewa_checkout.html", context)


@require_GET
def esewa_return(request, payment_id):
    payment = _payment(payment_id, "esewa")
    try:
        fields = esewa.decode_return_data(request.GET.get("data", ""))
    except esewa.EsewaDataInvalid as exc:
        logger.warning("eSewa return data refused", extra={"payment": str(payment.pk), "reason": str(exc)})
        return _back_to_merchant(request, payment)
    mismatch = esewa.return_data_mismatch(fields, payment)
    if mismatch:
        # eSewa signed it, but for another payment or amount: a replay, or a merchant mix-up.
        payment_flag_provider_data(
            payment_id=payment.pk,
            type="provider.return_mismatch",
            key=fields["signature"],
            data={
                "trigger": "esewa_return",
                "mismatch": {name: {"got": str(got), "expected": str(want)} for name, (got, want) in mismatch.items()},
                "transaction_code": fields.get("transaction_code"),
            },
        )
        return _back_to_merchant(request, payment)
    payment_check_with_provider(
        payment_id=payment.pk, data={"trigger": "esewa_return", "transaction_code": fields["transaction_code"]}
    )
    return _back_to_merchant(request, payment)


@require_GET
def esewa_failure(request, payment_id):
    # eSewa sends the payer here unsigned; its status check, asked with Paydesk's own
    # transaction_uuid and amount, is all that counts (a payer who never started stays pending).
    payment = _payment(payment_id, "esewa")
    payment_check_with_provider(payment_id=payment.pk, data={"trigger": "esewa_failure"})
    return _back_to_merchant(request, payment)


@require_GET
def khalti_return(request, payment_id):
    payment = _payment(payment_id, "khalti")
    pidx = request.GET.get("pidx", "")
    if not payment.provider_payment_id or not hmac.compare_digest(pidx.encode(), payment.provider_payment_id.encode()):
        logger.warning("Khalti return for another pidx ignored", extra={"payment": str(payment.pk)})
        return _back_to_merchant(request, payment)
    payment_check_with_provider(
        payment_id=payment.pk,
        data={"trigger": "khalti_return", "return_status": request.GET.get("status", "")[:40]},
    )
    return _back_to_merchant(request, payment)
