"""Booking what a claimed attempt came to (installment_record), and closing orders.

Whoever claimed the attempt (the collector, an early payment, the order's creation with
its down payment) books its outcome here, in a short transaction that locks the order,
then the installment (the lock order everywhere), and checks the installment is still
on the charge's key.
"""

import logging
from datetime import datetime, timedelta

from django.conf import settings
from django.db import transaction

from installments.events import installment_data, order_data, timeline_event
from installments.models import Installment, InstallmentCharge, InstallmentEvent, InstallmentOrder
from payments.models import Charge
from webhooks.services import event_emit

logger = logging.getLogger("paydesk.installments")

Status = Installment.Status
Claim = Installment.ClaimSource
OPEN = (Status.SCHEDULED, Status.PROCESSING, Status.FAILED)  # still owed


@transaction.atomic
def installment_record(
    *, installment_id, charge_key: str, charge: Charge | None, error: str, now: datetime, source: str = "collection"
) -> str:
    """Book the outcome of a claimed attempt. Locks the order, then the installment.

    A no-op unless the installment is still `processing` on `charge_key` (a replay, or
    an attempt someone else finished); a succeeded charge that finds it otherwise is
    logged and put on the timeline for staff. Pending charge: stays `processing`.
    Succeeded: `paid`, whatever the order's status (the money was taken). Otherwise, by
    order and claim: an order no longer active closes the installment like the order
    (`canceled` / `defaulted`); a failed early payment puts it back as it was (its
    collection attempts and due date untouched); a failed down payment cancels the
    order; a failed collection is retried on the dunning schedule, then `defaulted`
    with its order. Only an active order moves (completed, defaulted, canceled), and
    its open installments close with it. Returns the installment's status.
    """
    order_id = Installment.objects.values_list("order_id", flat=True).get(pk=installment_id)
    locking = InstallmentOrder.objects.select_for_update(no_key=True, of=("self",))  # the order, not its merchant
    order = locking.select_related("merchant").get(pk=order_id)
    installment = Installment.objects.select_for_update(no_key=True).get(pk=installment_id)
    if installment.status != Status.PROCESSING or installment.charge_key != charge_key:
        if (
            charge is not None
            and charge.status == Charge.Status.SUCCEEDED
            and not (installment.status == Status.PAID and installment.charge_key == charge_key)
        ):
            logger.error(
                "a succeeded installment charge matches no open attempt",
                extra={"installment": str(installment.pk), "charge": str(charge.pk), "key": charge_key},
            )
            timeline_event(
                order,
                "installment.unmatched_charge",
                installment=installment,
                source=source,
                data={"charge": str(charge.pk), "charge_key": charge_key, "status": installment.status},
            ).save()
        return installment.status
    attempt = installment.attempts
    if charge is not None:
        InstallmentCharge.objects.get_or_create(installment=installment, charge=charge, defaults={"attempt": attempt})
        if charge.status == Charge.Status.PENDING:
            return installment.status  # the charge resolves later; a re-claim books it then
    event_type, emit, close = None, None, None
    if charge is not None and charge.status == Charge.Status.SUCCEEDED:
        installment.status, installment.paid_at, installment.last_error = Status.PAID, now, ""
        emit = "installment.paid"
        if installment.claim_source == Claim.DOWN_PAYMENT and order.down_payment_charge_id is None:
            order.down_payment_charge = charge
            order.save(update_fields=["down_payment_charge", "updated_at"])
    else:
        installment.last_error = (error or "charge failed")[:1000]
        if order.status != InstallmentOrder.Status.ACTIVE:
            closed_like = {InstallmentOrder.Status.DEFAULTED: Status.DEFAULTED}
            installment.status = closed_like.get(order.status, Status.CANCELED)
        elif installment.claim_source == Claim.EARLY_PAYMENT:
            # Back as it was before the early payment claimed it: only collection counts
            # attempts, so one that was never collected was scheduled, else failed.
            installment.status = Status.FAILED if installment.attempts else Status.SCHEDULED
            event_type = "installment.early_payment_failed"
        elif installment.claim_source == Claim.DOWN_PAYMENT:
            installment.status, emit = Status.FAILED, "installment.failed"
            close = InstallmentOrder.Status.CANCELED
        else:
            dunning = settings.INSTALLMENT_DUNNING_SCHEDULE
            emit = "installment.failed"
            if attempt <= len(dunning):
                installment.status = Status.FAILED
                installment.next_attempt_at = now + timedelta(seconds=dunning[attempt - 1])
            else:
                installment.status = Status.DEFAULTED
                close = InstallmentOrder.Status.DEFAULTED
    installment.claimed_at = None
    installment.save(update_fields=["status", "paid_at", "last_error", "next_attempt_at", "claimed_at"])
    timeline = [
        timeline_event(
            order,
            event_type or f"installment.{installment.status}",
            installment=installment,
            from_status=Status.PROCESSING,
            to_status=installment.status,
            source=source,
            data={
                "attempt": attempt,
                "charge": str(charge.pk) if charge else None,
                "charge_key": charge_key,
                "error": installment.last_error or None,
            },
        )
    ]
    if emit:
        event_emit(merchant=order.merchant, type=emit, data=installment_data(installment))
    if order.status == InstallmentOrder.Status.ACTIVE:
        if close is not None:
            _order_close(order, close, timeline, source, reason=installment.last_error, closing=installment)
        elif installment.status == Status.PAID and not order.installments.filter(status__in=OPEN).exists():
            _order_close(order, InstallmentOrder.Status.COMPLETED, timeline, source)
    InstallmentEvent.objects.bulk_create(timeline)
    return installment.status


def _order_close(
    order: InstallmentOrder, status: str, timeline: list, source: str, reason: str = "", closing=None
) -> None:
    """Move the (locked) order to `status`; its other scheduled and failed installments
    close with it (defaulted with a defaulted order, else canceled). Processing ones
    close when their attempt is recorded; `closing`, the one that closed it, stays."""
    previous = order.status
    order.status = status
    order.save(update_fields=["status", "updated_at"])
    to = Status.DEFAULTED if status == InstallmentOrder.Status.DEFAULTED else Status.CANCELED
    siblings = list(
        order.installments.select_for_update(no_key=True)
        .filter(status__in=[Status.SCHEDULED, Status.FAILED])
        .exclude(pk=closing.pk if closing else None)
    )
    for sibling in siblings:
        timeline.append(
            timeline_event(
                order, f"installment.{to}", installment=sibling, from_status=sibling.status, to_status=to, source=source
            )
        )
    if siblings:
        Installment.objects.filter(pk__in=[s.pk for s in siblings]).update(status=to)
    timeline.append(
        timeline_event(
            order,
            f"installment_order.{status}",
            from_status=previous,
            to_status=status,
            source=source,
            data={"reason": reason} if reason else None,
        )
    )
    if status in (InstallmentOrder.Status.COMPLETED, InstallmentOrder.Status.DEFAULTED):
        event_emit(merchant=order.merchant, type=f"installment_order.{status}", data=order_data(order))
