"""Operator actions on installment orders (config/admin_actions.py): retry the failed
installments now, cancel the order, postpone its open installments."""

from datetime import timedelta

from django import forms

from config.admin_actions import OperatorAction, OperatorActionForm, Outcome, money
from installments.models import Installment, InstallmentOrder
from installments.services import installment_order_cancel, installment_reschedule, installment_retry_now

OPEN = (Installment.Status.SCHEDULED, Installment.Status.FAILED)


def _installments(order, statuses) -> list[Installment]:
    return sorted((i for i in order.installments.all() if i.status in statuses), key=lambda i: i.sequence)


def _listed(order, installments) -> str:
    return ", ".join(f"#{i.sequence} {money(i.amount, order.currency)} due {i.due_date:%Y-%m-%d}" for i in installments)


class _OrderAction(OperatorAction):
    def queryset(self, queryset):
        return queryset.select_related("customer").prefetch_related("installments")


def _state(order) -> str:
    counts: dict[str, int] = {}
    for installment in order.installments.all():
        counts[installment.status] = counts.get(installment.status, 0) + 1
    parts = ", ".join(f"{n} {status}" for status, n in sorted(counts.items()))
    return f"{order.customer}: {order.status}, {money(order.amount, order.currency)} ({parts})"


class RetryFailedNow(_OrderAction):
    name = "retry_installments"
    label = "Retry failed installments now…"
    title = "Retry failed installments now"
    permission = "installments.retry_installments"
    confirm_label = "Yes, retry now"
    atomic = True
    explanation = (
        "Each failed installment of an active order becomes due now: the next collection run charges it "
        "(wallet first, then the saved card), as if its retry time had come. Its dunning count is kept."
    )

    def skip_reason(self, order):
        if order.status != InstallmentOrder.Status.ACTIVE:
            return f"the order is {order.status}."
        if not _installments(order, [Installment.Status.FAILED]):
            return "no installment of it has failed."
        return None

    def state(self, order):
        return _state(order)

    def describe(self, order):
        return "Retry now: " + _listed(order, _installments(order, [Installment.Status.FAILED]))

    def perform(self, *, request, obj, data, key):
        retried = [
            installment_retry_now(installment=installment, source="staff")
            for installment in _installments(obj, [Installment.Status.FAILED])
        ]
        return Outcome(
            f"{len(retried)} failed installment{'s are' if len(retried) != 1 else ' is'} due now; "
            "the next collection run takes them.",
            details={"installments": [f"#{i.sequence} {i.pk}" for i in retried]},
        )


class CancelOrder(_OrderAction):
    name = "cancel_installment_order"
    label = "Cancel order…"
    title = "Cancel installment orders"
    permission = "installments.cancel_installment_order"
    confirm_label = "Yes, cancel"
    atomic = True
    explanation = (
        "The order's open installments (scheduled or failed) are canceled and will never be charged. Paid "
        "installments stay paid: canceling refunds nothing (refund their payments if the customer is owed "
        "money). Refused while one of its installments is being collected."
    )

    def skip_reason(self, order):
        if order.status != InstallmentOrder.Status.ACTIVE:
            return f"only an active order can be canceled (this one is {order.status})."
        return None

    def state(self, order):
        return _state(order)

    def describe(self, order):
        open_ = _installments(order, OPEN)
        paid = _installments(order, [Installment.Status.PAID])
        total = sum(i.amount for i in open_)
        return (
            f"Cancel {len(open_)} open installment{'s' if len(open_) != 1 else ''} "
            f"({money(total, order.currency)}); {len(paid)} paid stay paid."
        )

    def perform(self, *, request, obj, data, key):
        canceled = _installments(obj, OPEN)
        order = installment_order_cancel(order=obj, source="staff")
        return Outcome(
            f"Canceled; {len(canceled)} open installments canceled.",
            details={"order_status": order.status, "installments_canceled": [i.sequence for i in canceled]},
        )


class PostponeForm(OperatorActionForm):
    days = forms.IntegerField(
        min_value=1, max_value=365, label="Postpone by (days)", help_text="Every open installment moves this many days."
    )


class Postpone(_OrderAction):
    name = "reschedule_installments"
    label = "Postpone open installments…"
    title = "Postpone installments"
    permission = "installments.reschedule_installments"
    confirm_label = "Yes, postpone"
    form_class = PostponeForm
    atomic = True
    explanation = (
        "Every open installment (scheduled or failed) of each active order moves to a later due date by the "
        "number of days below, and is next tried then. Paid installments are untouched."
    )

    def skip_reason(self, order):
        if order.status != InstallmentOrder.Status.ACTIVE:
            return f"the order is {order.status}."
        if not _installments(order, OPEN):
            return "it has no open installment."
        return None

    def state(self, order):
        return _state(order)

    def describe(self, order):
        return "Postpone: " + _listed(order, _installments(order, OPEN))

    def perform(self, *, request, obj, data, key):
        days = data["days"]
        moved = [
            installment_reschedule(installment=i, due_date=i.due_date + timedelta(days=days), source="staff")
            for i in _installments(obj, OPEN)
        ]
        return Outcome(
            f"{len(moved)} installments postponed by {days} days.",
            details={"days": days, "installments": [f"#{i.sequence} → {i.due_date:%Y-%m-%d}" for i in moved]},
        )


RETRY_NOW = RetryFailedNow()
CANCEL_ORDER = CancelOrder()
POSTPONE = Postpone()
