"""A payment's state machine: lock the row, move it (refusing what TRANSITIONS forbids),
write the timeline event and the outbound event; and, once a payment is closed here, ask
its provider to stop taking money for it.

What every other write of a payment builds on (services, outcomes, refunds,
reconciliation, charges); it imports none of them.
"""

import logging

from django.db import DatabaseError
from django.utils import timezone

from config import rows
from config.errors import IllegalTransition
from config.faults import fault_point
from payments.models import TRANSITIONS, Payment, PaymentEvent
from payments.providers import ProviderFailure, failure_detail, get_provider
from wallets.ledger import in_transaction
from webhooks.services import event_emit

logger = logging.getLogger("paydesk.payments")

# The key of a timeline event's data that holds what staff may read and merchants may
# not (an exception's full text): shown in the admin, left out of the tracking API.
INTERNAL_DETAIL = "internal_detail"

Source = PaymentEvent.Source
# Outbound event for each state a payment can enter.
OUTBOUND = {
    "succeeded": "payment.succeeded",
    "failed": "payment.failed",
    "canceled": "payment.canceled",
    "expired": "payment.canceled",
    "partially_refunded": "payment.refunded",
    "refunded": "payment.refunded",
}


def payment_data(payment: Payment) -> dict:
    """What outbound events say about a payment."""
    return {
        "id": str(payment.pk),
        "order_id": payment.order_id,
        "status": payment.status,
        "amount": payment.amount,
        "amount_refunded": payment.amount_refunded,
        "currency": payment.currency,
        "provider": payment.provider,
        "provider_payment_id": payment.provider_payment_id,
        "customer": str(payment.customer_id) if payment.customer_id else None,
        "failure_reason": payment.failure_reason or None,
        "metadata": payment.metadata,
    }


def payment_lock(payment_id) -> Payment:
    # NO KEY UPDATE: excludes other writers of the row but not the KEY SHARE lock that
    # inserting a row referencing it (a timeline event, a charge) takes elsewhere. Its SQL
    # built once (config/rows.py): every settlement locks its payment.
    found = rows.select(Payment, [{"id": payment_id}], for_no_key_update=True)
    if not found:
        raise Payment.DoesNotExist("Payment matching query does not exist.")
    return found[0]


def timeline_add(
    *,
    payment: Payment,
    type: str,
    source: str,
    data: dict | None = None,
    from_status: str = "",
    to_status: str = "",
    flagged: bool = False,
) -> PaymentEvent:
    # save()'s INSERT with its SQL built once (config/rows.py): every write of a payment
    # adds one of these, and compiling the ORM's INSERT cost more than running it.
    return rows.insert(_timeline_event(payment, type, source, data, from_status, to_status, flagged))


def _timeline_event(payment, type, source, data=None, from_status="", to_status="", flagged=False) -> PaymentEvent:
    return PaymentEvent(
        payment=payment,
        type=type,
        source=source,
        data=data or {},
        from_status=from_status,
        to_status=to_status,
        flagged=flagged,
    )


def payment_transition(
    *, payment_id, to: str, source: str, data: dict | None = None, reason: str = "", locked: Payment | None = None
) -> Payment:
    """Move a payment to `to`: locks the row, refuses what the state machine forbids
    (IllegalTransition, 409), writes the timeline event and the outbound event.

    `locked`: the payment as the caller's payment_lock returned it, in this transaction
    (it is not locked and read again). In the caller's transaction if there is one,
    without a savepoint: IllegalTransition comes before any write."""
    with in_transaction():
        return _transition(locked or payment_lock(payment_id), to=to, source=source, data=data, reason=reason)


def _transition(payment: Payment, *, to: str, source: str, data: dict | None, reason: str) -> Payment:
    if to not in TRANSITIONS.get(payment.status, ()):
        raise IllegalTransition(f"A {payment.status} payment cannot become {to}.")
    previous = payment.status
    payment.status = to
    if reason:
        payment.failure_reason = reason
    elif to == "succeeded":
        payment.failure_reason = ""  # a failure the provider reported before it collected after all
    # save(update_fields=...)'s UPDATE and the timeline event's INSERT, in one statement
    # with its SQL built once (config/rows.py): every settlement moves its payment.
    payment.updated_at = timezone.now()
    changed = {"status": payment.status, "failure_reason": payment.failure_reason, "updated_at": payment.updated_at}
    event = _timeline_event(payment, f"payment.{to}", source, data, from_status=previous, to_status=to)
    if not rows.update_then_insert(Payment, payment.pk, changed, event):
        raise DatabaseError("Save with update_fields did not affect any rows.")
    if to in OUTBOUND:
        event_emit(merchant=payment.merchant, type=OUTBOUND[to], data=payment_data(payment))
    return payment


def _provider_cancel(payment: Payment, *, source: str) -> None:
    """After the payment is canceled or expired here (committed, no lock held), ask the
    provider to stop taking money for it. Its refusal is recorded, never raised: a
    success that arrives anyway is booked, refunded and flagged by payment_settle_from_provider."""
    if not payment.provider_payment_id:
        return
    try:
        get_provider(payment.provider).cancel_payment(payment=payment)
        fault_point("provider_called")
    except Exception as exc:
        detail = failure_detail(exc)[:2000]
        message = exc.message if isinstance(exc, ProviderFailure) else "The payment provider failed unexpectedly."
        logger.warning("provider did not cancel a payment", extra={"payment": str(payment.pk), "detail": detail})
        timeline_add(
            payment=payment,
            type="provider.cancel_failed",
            source=source,
            data={"error": message[:500], INTERNAL_DETAIL: detail},
        )
