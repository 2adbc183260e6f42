"""The mock provider: a checkout page served by Paydesk itself (/pay/mock/<id>) whose
Pay and Decline buttons send a signed notification through the same webhook path as
any provider, so the webhook-only flow can be clicked through with no network.

Anyone holding the link can press Pay, so it is usable only with MOCK_PROVIDER_ENABLED
(on by default with DEBUG only): otherwise payments cannot name it and its page is a 404."""

import uuid

from django.conf import settings
from django.urls import reverse

from config import rows

from .base import CreatedPayment, OffSessionResult, PaymentProvider, RefundResult, register

DECLINING_METHOD = "mock_card_declined"


@register
class MockProvider(PaymentProvider):
    name = "mock"

    def is_available(self) -> bool:
        # Its page marks payments paid for whoever opens it: development, or on purpose.
        return settings.MOCK_PROVIDER_ENABLED

    def create_payment(self, *, payment, idempotency_key: str) -> CreatedPayment:
        from payments.models import MockCheckout

        # The checkout's id follows from the payment's, so asking again (a retry after a
        # crash) finds the row already there and the same answer: one INSERT that skips
        # an existing row, instead of get_or_create's read, savepoint and insert.
        provider_payment_id = f"mock_{payment.pk.hex}"
        rows.insert(MockCheckout(payment=payment, provider_payment_id=provider_payment_id), ignore_conflicts=True)
        url = settings.PUBLIC_BASE_URL.rstrip("/") + reverse("mock-checkout", args=[payment.pk])
        return CreatedPayment(provider_payment_id=provider_payment_id, payment_url=url)

    def retrieve_status(self, *, payment) -> str:
        from payments.models import MockCheckout

        checkout = MockCheckout.objects.filter(payment=payment).first()
        return {"paid": "succeeded", "failed": "failed"}.get(checkout.status if checkout else "", "pending")

    def cancel_payment(self, *, payment) -> None:
        from payments.models import MockCheckout

        MockCheckout.objects.filter(payment=payment, status="pending").update(status="canceled")

    def refund(self, *, payment, amount: int, idempotency_key: str) -> RefundResult:
        return RefundResult(
            provider_refund_id=f"mock_re_{uuid.uuid5(uuid.NAMESPACE_URL, idempotency_key).hex}", status="succeeded"
        )

    def charge_off_session(
        self, *, customer, amount: int, currency: str, idempotency_key: str, description: str, metadata: dict
    ) -> OffSessionResult:
        charge_id = f"mock_ch_{uuid.uuid5(uuid.NAMESPACE_URL, idempotency_key).hex}"
        if customer.payment_method == DECLINING_METHOD:
            return OffSessionResult(provider_payment_id=charge_id, status="failed", failure_reason="card_declined")
        return OffSessionResult(provider_payment_id=charge_id, status="succeeded")

    def retrieve_charge(self, *, provider_charge_id: str) -> OffSessionResult:
        return OffSessionResult(provider_payment_id=provider_charge_id, status="succeeded")  # never answers pending
