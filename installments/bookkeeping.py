"""Booking what claimed attempts came to, and closing orders.

Two cores, each written once and set-based (a few statements whatever the number of
rows; a single installment or order is a batch of one):
- installments_paid: succeeded charges booked on the attempts that made them, and their
  orders completed when nothing is left open;
- orders_close: orders moved to completed, defaulted or canceled, their other open
  installments closed with them.
installment_record books one attempt, whatever its outcome, through them; the
collector's set-based wallet path (installments/collection.py) books a chunk of paid
attempts through installments_paid.

Both take what their caller has locked (the orders, then their installments: the lock
order everywhere) and append to the caller's timeline, which the caller writes in one
INSERT.
"""

import logging
from datetime import datetime, timedelta
from typing import NamedTuple

from django.conf import settings
from django.db import transaction
from django.db.models import Case, UUIDField, Value, When
from django.utils import timezone

from config.rows import insert_many
from installments.events import installment_data, order_data, timeline_event
from installments.models import Installment, InstallmentCharge, InstallmentOrder
from payments.models import Charge
from webhooks.services import event_emit, events_emit

logger = logging.getLogger("paydesk.installments")

Status = Installment.Status
Claim = Installment.ClaimSource
OPEN = (Status.SCHEDULED, Status.PROCESSING, Status.FAILED)  # still owed


class Closing(NamedTuple):
    """An order to close: to `status`, for `reason`, by `closing` (the installment whose
    outcome closed it, which keeps its own status)."""

    order: InstallmentOrder
    status: str
    reason: str = ""
    closing: Installment | None = None


def _outcome_event(order, installment, *, charge, charge_key: str, attempt: int, source: str, type: str = ""):
    """The timeline row of an attempt's outcome: processing → the installment's status."""
    return timeline_event(
        order,
        type or f"installment.{installment.status}",
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


def _charges_link(attempts: list[tuple[Installment, Charge]]) -> None:
    """Record which charge each attempt made (InstallmentCharge, with the attempt's
    count), once: a charge booked again (pending when first recorded, or a replay) is
    linked already, and the unique (installment, charge) pair makes that a no-op."""
    InstallmentCharge.objects.bulk_create(
        [InstallmentCharge(installment_id=i.pk, charge_id=c.pk, attempt=i.attempts) for i, c in attempts],
        ignore_conflicts=True,
    )


def installments_paid(
    *, paid: list[tuple[Installment, Charge]], orders: dict, now: datetime, source: str, timeline: list
) -> None:
    """Book succeeded charges on the attempts that made them: each installment `paid`
    (paid_at `now`) with its charge linked, an `installment.paid` row on its order's
    timeline and an installment.paid event; a down payment's charge noted on its order;
    then every active order of theirs with nothing left open completed (orders_close).
    Whatever an order's status, its installment is paid: the money was taken. Events per
    installment, then per order, in the order given.

    The caller holds the locks (`orders`, id → locked order with its merchant, then the
    installments), has checked each installment is `processing` on its charge's key,
    and writes `timeline`. A few statements whatever the number."""
    if not paid:
        return
    Installment.objects.filter(pk__in=[i.pk for i, _ in paid]).update(
        status=Status.PAID, paid_at=now, last_error="", claimed_at=None
    )
    _charges_link(paid)
    downs = [
        (i, c)
        for i, c in paid
        if i.claim_source == Claim.DOWN_PAYMENT and orders[i.order_id].down_payment_charge_id is None
    ]
    if downs:
        InstallmentOrder.objects.filter(pk__in=[i.order_id for i, _ in downs]).update(
            down_payment_charge=Case(
                *(When(pk=i.order_id, then=Value(c.pk)) for i, c in downs), output_field=UUIDField()
            ),
            updated_at=timezone.now(),
        )
        for i, c in downs:
            orders[i.order_id].down_payment_charge = c
    events: dict = {}
    for installment, charge in paid:
        installment.status, installment.paid_at, installment.last_error, installment.claimed_at = (
            Status.PAID,
            now,
            "",
            None,
        )
        order = orders[installment.order_id]
        timeline.append(
            _outcome_event(
                order,
                installment,
                charge=charge,
                charge_key=installment.charge_key,
                attempt=installment.attempts,
                source=source,
            )
        )
        events.setdefault(order.merchant_id, (order.merchant, []))[1].append(
            ("installment.paid", installment_data(installment))
        )
    for merchant, merchant_events in events.values():
        events_emit(merchant=merchant, events=merchant_events)
    active = {i.order_id for i, _ in paid if orders[i.order_id].status == InstallmentOrder.Status.ACTIVE}
    if not active:
        return
    still_open = set(
        Installment.objects.filter(order_id__in=active, status__in=OPEN).values_list("order_id", flat=True).distinct()
    )
    completed = InstallmentOrder.Status.COMPLETED
    orders_close(
        closings=[Closing(orders[order_id], completed) for order_id in sorted(active - still_open)],
        timeline=timeline,
        source=source,
    )


def orders_close(*, closings: list[Closing], timeline: list, source: str) -> None:
    """Move locked, active orders to their Closing status; each order's other scheduled
    and failed installments close with it (defaulted with a defaulted order, else
    canceled), locked after the orders. Processing ones close when their attempt is
    recorded; `closing`, the one that closed it, stays. Per order, in the order given:
    its installments' rows then its own on the timeline, and installment_order.completed
    or .defaulted emitted (a canceled order tells no one: its caller answered already).
    A few statements whatever the number."""
    if not closings:
        return
    now = timezone.now()
    by_status: dict[str, list] = {}
    for c in closings:
        by_status.setdefault(c.status, []).append(c.order.pk)
    for status, order_ids in by_status.items():
        InstallmentOrder.objects.filter(pk__in=order_ids).update(status=status, updated_at=now)
    # An order completes because nothing is left open: only the others have siblings.
    others = [c for c in closings if c.status != InstallmentOrder.Status.COMPLETED]
    siblings: dict = {}
    if others:
        rows = Installment.objects.select_for_update(no_key=True).filter(
            order_id__in=[c.order.pk for c in others], status__in=[Status.SCHEDULED, Status.FAILED]
        )
        keep = [c.closing.pk for c in others if c.closing is not None]
        if keep:
            rows = rows.exclude(pk__in=keep)
        for row in rows.order_by("order_id", "sequence"):
            siblings.setdefault(row.order_id, []).append(row)
    moved: dict[str, list] = {}
    events: dict = {}
    for c in closings:
        order = c.order
        previous, order.status, order.updated_at = order.status, c.status, now
        to = Status.DEFAULTED if c.status == InstallmentOrder.Status.DEFAULTED else Status.CANCELED
        for sibling in siblings.get(order.pk, ()):
            timeline.append(
                timeline_event(
                    order,
                    f"installment.{to}",
                    installment=sibling,
                    from_status=sibling.status,
                    to_status=to,
                    source=source,
                )
            )
            sibling.status = to
            moved.setdefault(to, []).append(sibling.pk)
        timeline.append(
            timeline_event(
                order,
                f"installment_order.{c.status}",
                from_status=previous,
                to_status=c.status,
                source=source,
                data={"reason": c.reason} if c.reason else None,
            )
        )
        if c.status in (InstallmentOrder.Status.COMPLETED, InstallmentOrder.Status.DEFAULTED):
            events.setdefault(order.merchant_id, (order.merchant, []))[1].append(
                (f"installment_order.{c.status}", order_data(order))
            )
    for to, pks in moved.items():
        Installment.objects.filter(pk__in=pks).update(status=to)
    for merchant, merchant_events in events.values():
        events_emit(merchant=merchant, events=merchant_events)


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
    timeline: list = []
    if charge is not None and charge.status == Charge.Status.SUCCEEDED:
        installments_paid(
            paid=[(installment, charge)], orders={order.pk: order}, now=now, source=source, timeline=timeline
        )
        insert_many(timeline)
        return installment.status
    if charge is not None:
        _charges_link([(installment, charge)])
        if charge.status == Charge.Status.PENDING:
            return installment.status  # the charge resolves later; a re-claim books it then
    attempt = installment.attempts
    event_type, emit, close = "", None, None
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
    installment.save(update_fields=["status", "last_error", "next_attempt_at", "claimed_at"])
    timeline.append(
        _outcome_event(
            order, installment, charge=charge, charge_key=charge_key, attempt=attempt, source=source, type=event_type
        )
    )
    if emit:
        event_emit(merchant=order.merchant, type=emit, data=installment_data(installment))
    if close is not None and order.status == InstallmentOrder.Status.ACTIVE:
        orders_close(
            closings=[Closing(order, close, installment.last_error, installment)], timeline=timeline, source=source
        )
    insert_many(timeline)
    return installment.status
