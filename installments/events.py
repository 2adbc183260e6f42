"""What installments write about themselves: the rows of an order's timeline
(InstallmentEvent) and the payloads of their outbound events (installment.*,
installment_order.*)."""

from installments.models import Installment, InstallmentEvent, InstallmentOrder


def timeline_event(order, type: str, *, installment=None, from_status="", to_status="", source="api", data=None):
    """One timeline row, unsaved: callers write a transaction's rows in one INSERT. Set by
    ids, which is all the row needs (and cheaper than relating instances, per row of a
    chunk); the order and installment may be unsaved yet, their uuids are set."""
    return InstallmentEvent(
        order_id=order.pk,
        installment_id=installment.pk if installment is not None else None,
        type=type,
        from_status=from_status,
        to_status=to_status,
        source=source,
        data=data or {},
    )


def installment_data(installment: Installment) -> dict:
    return {
        "id": str(installment.pk),
        "order": str(installment.order_id),
        "sequence": installment.sequence,
        "due_date": installment.due_date.isoformat(),
        "amount": installment.amount,
        "status": installment.status,
        "attempts": installment.attempts,
    }


def order_data(order: InstallmentOrder) -> dict:
    return {
        "id": str(order.pk),
        "customer": str(order.customer_id),
        "amount": order.amount,
        "currency": order.currency,
        "status": order.status,
    }
