"""Operator actions on payments (config/admin_actions.py): refund (full or partial),
cancel a pending payment, ask the provider about a pending payment now."""

from django import forms
from django.contrib import messages

from config.admin_actions import (
    OperatorAction,
    OperatorActionForm,
    Outcome,
    amount_widget,
    minor_units_label,
    money,
)
from config.currencies import MAX_AMOUNT
from payments.models import PaymentEvent, Refund
from payments.ownership import payment_charge_backed
from payments.services import payment_cancel, payment_refund, payments_reconcile

STAFF = PaymentEvent.Source.STAFF


def _status(payment) -> str:
    return payment.status.replace("_", " ").capitalize()


class RefundForm(OperatorActionForm):
    """A reason, and for one payment an amount: blank refunds everything left."""

    amount = forms.IntegerField(required=False, min_value=1, max_value=MAX_AMOUNT)

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        if len(self.objects) != 1:
            del self.fields["amount"]  # several payments: each is refunded in full
            return
        payment = self.objects[0]
        left = payment.refundable
        amount = self.fields["amount"]
        amount.label = minor_units_label("Amount to refund", payment.currency)
        amount.help_text = (
            f"Leave blank to refund everything left: {money(left, payment.currency)} ({left}). "
            "A smaller amount is a partial refund."
        )
        amount.widget = amount_widget(payment.currency)
        amount.widget.attrs.update(
            {"min": 1, "max": left, "data-blank": f"= everything left, {money(left, payment.currency)}"}
        )

    def clean_amount(self):
        amount = self.cleaned_data.get("amount")
        if amount is not None:
            payment = self.objects[0]
            left = payment.refundable
            if amount > left:
                raise forms.ValidationError(
                    f"That is more than is left to refund: at most {money(left, payment.currency)} ({left})."
                )
        return amount


class RefundPayment(OperatorAction):
    name = "refund_payment"
    label = "Refund…"
    title = "Refund payments"
    permission = "payments.refund_payment"
    confirm_label = "Yes, refund"
    form_class = RefundForm
    explanation = (
        "The money goes back where it came from: a wallet-funded part returns to the customer's wallet at "
        "once (a ledger reversal), the card part is refunded through the provider and booked out of the "
        "merchant's balance, and split recipients give back their shares pro rata. The payment becomes "
        "partially refunded or refunded. Your reason is kept on the refund and in the audit trail."
    )

    def skip_reason(self, payment):
        if payment.status not in ("succeeded", "partially_refunded"):
            return f"a {payment.status} payment cannot be refunded."
        if not payment.refundable:
            return "nothing is left to refund."
        return None

    def state(self, payment):
        refunded = f", {money(payment.amount_refunded, payment.currency)} refunded" if payment.amount_refunded else ""
        return f"{_status(payment)}: {money(payment.amount, payment.currency)}{refunded}"

    def describe(self, payment):
        return f"Refund up to {money(payment.refundable, payment.currency)} (what is left)."

    def perform(self, *, request, obj, data, key):
        if Refund.objects.filter(payment_id=obj.pk, idempotency_key=key).exists():
            return Outcome("This refund was already made; nothing changed.", changed=False, level=messages.WARNING)
        refund = payment_refund(
            payment=obj, amount=data.get("amount"), reason=data["reason"], source=STAFF, idempotency_key=key
        )
        obj.refresh_from_db()
        amount = money(refund.amount, obj.currency)
        if refund.status == Refund.Status.PENDING:
            result = f"Refund of {amount} reserved; the provider could not be reached yet and is asked again."
            level = messages.WARNING
        else:
            result = f"Refunded {amount}; the payment is now {obj.status.replace('_', ' ')}."
            level = messages.SUCCESS
        return Outcome(
            result,
            level=level,
            details={
                "refund": refund.pk,
                "amount": refund.amount,
                "currency": obj.currency,
                "wallet_amount": refund.wallet_amount,
                "provider_amount": refund.provider_amount,
                "refund_status": refund.status,
                "payment_status": obj.status,
            },
        )


class CancelPayment(OperatorAction):
    name = "cancel_payment"
    label = "Cancel…"
    title = "Cancel pending payments"
    permission = "payments.cancel_payment"
    confirm_label = "Yes, cancel"
    explanation = (
        "A pending payment is canceled here, then its provider is asked to stop taking money for it. "
        "Should the customer pay anyway, that money is booked, refunded and flagged. Only pending "
        "payments that do not belong to a charge can be canceled (a charge settles its own payment)."
    )

    def skip_reason(self, payment):
        if payment.status != "pending":
            return f"only a pending payment can be canceled (this one is {payment.status})."
        if payment_charge_backed(payment):
            return "it belongs to a charge and settles with it."
        return None

    def state(self, payment):
        return f"{_status(payment)}: {money(payment.amount, payment.currency)} via {payment.provider}"

    def describe(self, payment):
        return "Cancel it, and tell the provider."

    def perform(self, *, request, obj, data, key):
        if obj.timeline.filter(type="payment.canceled", data__idempotency_key=key).exists():
            return Outcome("Already canceled from this page; nothing changed.", changed=False, level=messages.WARNING)
        payment = payment_cancel(payment=obj, source=STAFF, idempotency_key=key)
        return Outcome("Canceled.", details={"payment_status": payment.status})


class ReconcilePayment(OperatorAction):
    name = "reconcile_payment"
    label = "Ask the provider now…"
    title = "Reconcile pending payments now"
    permission = "payments.reconcile_payment"
    confirm_label = "Yes, ask the provider"
    explanation = (
        "Asks each payment's provider what became of it, whatever its age, and settles it the way a "
        "provider webhook would: succeeded, failed or canceled; one pending past the expiry threshold "
        "expires. A payment the provider still has as pending stays pending."
    )

    def skip_reason(self, payment):
        if payment.status != "pending":
            return f"only a pending payment is reconciled (this one is {payment.status})."
        if payment_charge_backed(payment):
            return "it belongs to a charge, which settles it."
        return None

    def state(self, payment):
        return f"{_status(payment)} since {payment.created_at:%Y-%m-%d %H:%M}"

    def describe(self, payment):
        return f"Ask {payment.provider} about it, and settle it by the answer."

    def perform(self, *, request, obj, data, key):
        counts = payments_reconcile(payment_ids=[obj.pk])
        if not counts:
            return Outcome(
                "Not asked: it is no longer pending, or is being asked about right now.",
                changed=False,
                level=messages.WARNING,
            )
        result = next(iter(counts))
        if result == "still_pending":
            return Outcome("The provider has it as pending still; nothing changed.", changed=False, level=messages.INFO)
        if result == "error":
            return Outcome("The provider could not be asked (see the logs).", changed=False, level=messages.ERROR)
        obj.refresh_from_db()
        return Outcome(
            f"The provider's answer: {result}; the payment is now {obj.status.replace('_', ' ')}.",
            details={"result": result, "payment_status": obj.status},
        )


REFUND = RefundPayment()
CANCEL = CancelPayment()
RECONCILE = ReconcilePayment()
