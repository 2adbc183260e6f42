"""Writes for installments: create orders, collect due installments, dunning, pay early,
cancel, reschedule.

Lock order, everywhere: the order row, then its installments. Collection claims rows
with SKIP LOCKED in short transactions and charges outside any lock; each charge's
idempotency key is derived from the installment and its attempt number, so a crashed,
repeated or concurrent run never charges an installment twice (nor at the provider).
"""

import logging
from collections.abc import Iterator
from datetime import date, datetime, timedelta

from django.conf import settings
from django.db import transaction
from django.db.models import F, Q, Sum
from django.utils import timezone

from config.errors import IllegalTransition, InsufficientFunds, InvalidRequest
from installments.models import Installment, InstallmentCharge, InstallmentEvent, InstallmentOrder
from installments.schedule import schedule_equal, schedule_explicit
from payments.charges import charge_create
from payments.models import Charge
from webhooks.services import event_emit

logger = logging.getLogger("paydesk.installments")

OPEN = (Installment.Status.SCHEDULED, Installment.Status.PROCESSING, Installment.Status.FAILED)
CLAIM_LEASE = timedelta(minutes=10)


def _start_of(day: date) -> datetime:
    return timezone.make_aware(datetime.combine(day, datetime.min.time()))


def _event(order, type: str, *, installment=None, from_status="", to_status="", source="api", data=None):
    return InstallmentEvent(
        order=order,
        installment=installment,
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


# --- Create -----------------------------------------------------------------------------


def installment_order_create(
    *,
    merchant,
    customer,
    amount: int,
    currency: str,
    installment_count: int | None = None,
    interval: str | None = None,
    interval_count: int = 1,
    start_date: date | None = None,
    schedule: list[dict] | None = None,
    down_payment: int = 0,
    description: str = "",
    metadata: dict | None = None,
    idempotency_key: str | None = None,
) -> InstallmentOrder:
    """Create an order and its installments: equal parts over `installment_count`
    periods, or the explicit `schedule`. The amounts always sum exactly to what is owed
    after the down payment (remainder to the first installments).

    A down payment is charged first (wallet, then card) with an idempotency key; if it
    does not succeed nothing else is created and InsufficientFunds (402) is raised.
    Raises InvalidRequest naming the field for a bad schedule.
    """
    currency = currency.lower()
    if down_payment < 0 or down_payment >= amount:
        raise InvalidRequest("down_payment must be at least 0 and less than the amount.", param="down_payment")
    owed = amount - down_payment
    if schedule:
        parts = schedule_explicit(amount=owed, schedule=schedule)
    else:
        if not installment_count or not interval:
            raise InvalidRequest("Give installment_count and interval, or a schedule.", param="installment_count")
        parts = schedule_equal(
            amount=owed,
            count=installment_count,
            interval=interval,
            interval_count=interval_count,
            start=start_date or timezone.localdate(),
        )

    down_charge = None
    if down_payment:
        key = f"down:{idempotency_key}" if idempotency_key else None
        down_charge = charge_create(
            merchant=merchant,
            customer=customer,
            amount=down_payment,
            currency=currency,
            description="down payment",
            idempotency_key=key,
        )
        if down_charge.status != Charge.Status.SUCCEEDED:
            raise InsufficientFunds(
                f"The down payment was not collected: {down_charge.failure_reason or 'pending'}.", param="down_payment"
            )

    with transaction.atomic():
        order = InstallmentOrder.objects.create(
            merchant=merchant,
            customer=customer,
            amount=amount,
            currency=currency,
            down_payment=down_payment,
            down_payment_charge=down_charge,
            interval=interval or "",
            interval_count=interval_count,
            description=description,
            metadata=metadata or {},
        )
        Installment.objects.bulk_create(
            [
                Installment(order=order, sequence=i + 1, due_date=due, amount=part, next_attempt_at=_start_of(due))
                for i, (due, part) in enumerate(parts)
            ]
        )
        _event(
            order,
            "installment_order.created",
            to_status="active",
            data={"amount": amount, "down_payment": down_payment, "installments": len(parts)},
        ).save()
    return order


# --- Collection -------------------------------------------------------------------------


def installments_claim(*, now: datetime, chunk: int) -> list[Installment]:
    """Claim up to `chunk` due installments of active orders for this collector:
    SELECT ... FOR UPDATE SKIP LOCKED, so concurrent collectors take disjoint rows.
    A due one becomes `processing` with its attempt counted; one left `processing` by a
    collector that died (claim older than the lease) is re-claimed with the SAME attempt
    number, so its charge is looked up by the same idempotency key, not made again."""
    due = Q(status__in=[Installment.Status.SCHEDULED, Installment.Status.FAILED], next_attempt_at__lte=now) | Q(
        status=Installment.Status.PROCESSING, claimed_at__lt=now - CLAIM_LEASE
    )
    with transaction.atomic():
        rows = list(
            Installment.objects.select_for_update(skip_locked=True, of=("self",))
            .filter(due, order__status=InstallmentOrder.Status.ACTIVE)
            .select_related("order__merchant", "order__customer")
            .order_by("next_attempt_at")[:chunk]
        )
        fresh = [r.pk for r in rows if r.status != Installment.Status.PROCESSING]
        if fresh:
            Installment.objects.filter(pk__in=fresh).update(
                status=Installment.Status.PROCESSING, attempts=F("attempts") + 1, claimed_at=now
            )
        stale = [r.pk for r in rows if r.status == Installment.Status.PROCESSING]
        if stale:
            Installment.objects.filter(pk__in=stale).update(claimed_at=now)
        for row in rows:
            if row.pk in fresh:
                row.attempts += 1
            row.status, row.claimed_at = Installment.Status.PROCESSING, now
    return rows


def installment_collect(*, installment: Installment, now: datetime) -> str:
    """Charge one claimed installment (no lock held) and record the outcome."""
    key = f"inst:{installment.pk}:{installment.attempts}"
    order = installment.order
    try:
        charge = charge_create(
            merchant=order.merchant,
            customer=order.customer,
            amount=installment.amount,
            currency=order.currency,
            idempotency_key=key,
            order_id=key,
            description=f"installment {installment.sequence} of order {order.pk}",
        )
    except InsufficientFunds as exc:
        return installment_record(
            installment_id=installment.pk,
            attempt=installment.attempts,
            charge=None,
            error=f"insufficient_funds: {exc.message}",
            now=now,
        )
    return installment_record(
        installment_id=installment.pk, attempt=installment.attempts, charge=charge, error=charge.failure_reason, now=now
    )


@transaction.atomic
def installment_record(
    *, installment_id, attempt: int, charge: Charge | None, error: str, now: datetime, source: str = "collection"
) -> str:
    """Book a collection attempt: paid, failed (retry on the dunning schedule) or
    defaulted after the last retry (the order too). Locks the order, then the
    installment. A no-op if the installment moved on meanwhile; returns its status."""
    order_id = Installment.objects.values_list("order_id", flat=True).get(pk=installment_id)
    order = InstallmentOrder.objects.select_for_update(no_key=True).get(pk=order_id)
    installment = Installment.objects.select_for_update(no_key=True).get(pk=installment_id)
    if installment.status != Installment.Status.PROCESSING or installment.attempts != attempt:
        return installment.status
    if charge is not None:
        InstallmentCharge.objects.get_or_create(installment=installment, attempt=attempt, defaults={"charge": charge})
        if charge.status == Charge.Status.PENDING:
            return installment.status  # the provider has not answered: the next run looks again
    events = []
    if charge is not None and charge.status == Charge.Status.SUCCEEDED:
        installment.status, installment.paid_at, installment.last_error = Installment.Status.PAID, now, ""
        events.append(("installment.paid", installment_data))
    else:
        dunning = settings.INSTALLMENT_DUNNING_SCHEDULE
        installment.last_error = (error or "charge failed")[:1000]
        if attempt <= len(dunning):
            installment.status = Installment.Status.FAILED
            installment.next_attempt_at = now + timedelta(seconds=dunning[attempt - 1])
        else:
            installment.status = Installment.Status.DEFAULTED
        events.append(("installment.failed", installment_data))
    installment.claimed_at = None
    installment.save(update_fields=["status", "paid_at", "last_error", "next_attempt_at", "claimed_at"])
    timeline = [
        _event(
            order,
            f"installment.{installment.status}",
            installment=installment,
            from_status="processing",
            to_status=installment.status,
            source=source,
            data={
                "attempt": attempt,
                "charge": str(charge.pk) if charge else None,
                "error": installment.last_error or None,
            },
        )
    ]
    for type_, data in events:
        event_emit(merchant=order.merchant, type=type_, data=data(installment))
    if installment.status == Installment.Status.DEFAULTED:
        _order_close(order, InstallmentOrder.Status.DEFAULTED, timeline, source)
    elif installment.status == Installment.Status.PAID and not order.installments.filter(status__in=OPEN).exists():
        _order_close(order, InstallmentOrder.Status.COMPLETED, timeline, source)
    InstallmentEvent.objects.bulk_create(timeline)
    return installment.status


def _order_close(order: InstallmentOrder, status: str, timeline: list, source: str) -> None:
    previous = order.status
    order.status = status
    order.save(update_fields=["status", "updated_at"])
    timeline.append(_event(order, f"installment_order.{status}", from_status=previous, to_status=status, source=source))
    event_emit(merchant=order.merchant, type=f"installment_order.{status}", data=order_data(order))


def installments_collect(
    *, now: datetime | None = None, limit: int | None = None, chunk: int | None = None
) -> Iterator[dict]:
    """Collect every due installment, chunk by chunk (memory stays flat whatever the
    backlog; stop at any point and the next run resumes). Yields per-chunk counts.
    Safe to run in several processes at once."""
    now = now or timezone.now()
    chunk = chunk or settings.INSTALLMENT_COLLECT_CHUNK
    done = 0
    while limit is None or done < limit:
        rows = installments_claim(now=now, chunk=min(chunk, limit - done) if limit else chunk)
        if not rows:
            return
        counts: dict[str, int] = {}
        for installment in rows:
            try:
                status = installment_collect(installment=installment, now=now)
            except Exception:  # one bad installment must not stop the run; its claim lapses and it is retried
                logger.exception("installment collection failed", extra={"installment": str(installment.pk)})
                status = "error"
            counts[status] = counts.get(status, 0) + 1
        done += len(rows)
        yield counts


# --- Pay early, cancel, reschedule, retry -----------------------------------------------------


def installment_order_pay(
    *, order: InstallmentOrder, amount: int | None = None, idempotency_key: str | None = None
) -> InstallmentOrder:
    """Pay the next open installment now, or (amount = the remaining balance) all of them,
    with one charge. Raises InvalidRequest for another amount, IllegalTransition (409)
    unless the order is active, InsufficientFunds (402) if the charge cannot be made."""
    with transaction.atomic():
        locked = InstallmentOrder.objects.select_for_update(no_key=True).get(pk=order.pk)
        if locked.status != InstallmentOrder.Status.ACTIVE:
            raise IllegalTransition(f"A {locked.status} order cannot be paid.")
        open_rows = list(
            locked.installments.select_for_update(no_key=True)
            .filter(status__in=[Installment.Status.SCHEDULED, Installment.Status.FAILED])
            .order_by("sequence")
        )
        if locked.installments.filter(status=Installment.Status.PROCESSING).exists():
            raise IllegalTransition("An installment of this order is being collected right now; try again shortly.")
        if not open_rows:
            raise IllegalTransition("Nothing is left to pay.")
        remaining = sum(i.amount for i in open_rows)
        if amount is None or amount == open_rows[0].amount:
            targets = open_rows[:1]
        elif amount == remaining:
            targets = open_rows
        else:
            raise InvalidRequest(
                f"Pay the next installment ({open_rows[0].amount}) or all that is left ({remaining}).", param="amount"
            )
        now = timezone.now()
        previous = {target.pk: target.status for target in targets}
        for target in targets:  # claimed like a collection: collectors now skip them
            target.status, target.attempts, target.claimed_at = Installment.Status.PROCESSING, target.attempts + 1, now
            target.save(update_fields=["status", "attempts", "claimed_at"])
    total = sum(t.amount for t in targets)
    key = idempotency_key or f"pay:{order.pk}:" + ",".join(f"{t.sequence}.{t.attempts}" for t in targets)
    try:
        charge = charge_create(
            merchant=locked.merchant,
            customer=locked.customer,
            amount=total,
            currency=locked.currency,
            idempotency_key=key,
            order_id=key,
            description=f"early payment of order {order.pk}",
        )
    except InsufficientFunds:
        _release(targets, previous)
        raise
    if charge.status == Charge.Status.FAILED:
        _release(targets, previous)
        raise InsufficientFunds(f"The payment was declined: {charge.failure_reason}.", param="amount")
    for target in targets:
        installment_record(
            installment_id=target.pk, attempt=target.attempts, charge=charge, error="", now=now, source="api"
        )
    locked.refresh_from_db()
    return locked


def _release(targets: list[Installment], previous: dict) -> None:
    """Undo an early-payment claim that did not charge: back as it was, attempt uncounted."""
    for target in targets:
        Installment.objects.filter(pk=target.pk, status=Installment.Status.PROCESSING).update(
            status=previous[target.pk], attempts=F("attempts") - 1, claimed_at=None
        )


@transaction.atomic
def installment_order_cancel(*, order: InstallmentOrder, source: str = "api") -> InstallmentOrder:
    """Cancel an active order: open installments are canceled, paid ones stay paid.
    Refused (409) while one is being collected, or unless the order is active."""
    locked = InstallmentOrder.objects.select_for_update(no_key=True).get(pk=order.pk)
    if locked.status != InstallmentOrder.Status.ACTIVE:
        raise IllegalTransition(f"A {locked.status} order cannot be canceled.")
    rows = list(locked.installments.select_for_update(no_key=True).all())
    if any(r.status == Installment.Status.PROCESSING for r in rows):
        raise IllegalTransition("An installment is being collected right now; try again shortly.")
    timeline = []
    for row in rows:
        if row.status in (Installment.Status.SCHEDULED, Installment.Status.FAILED):
            timeline.append(
                _event(
                    locked,
                    "installment.canceled",
                    installment=row,
                    from_status=row.status,
                    to_status="canceled",
                    source=source,
                )
            )
            row.status = Installment.Status.CANCELED
            row.save(update_fields=["status"])
    locked.status = InstallmentOrder.Status.CANCELED
    locked.save(update_fields=["status", "updated_at"])
    timeline.append(
        _event(locked, "installment_order.canceled", from_status="active", to_status="canceled", source=source)
    )
    InstallmentEvent.objects.bulk_create(timeline)
    return locked


@transaction.atomic
def installment_reschedule(*, installment: Installment, due_date: date, source: str = "staff") -> Installment:
    """Move an open installment to a new due date (staff). Its next attempt is then."""
    InstallmentOrder.objects.select_for_update(no_key=True).get(pk=installment.order_id)
    locked = Installment.objects.select_for_update(no_key=True).get(pk=installment.pk)
    if locked.status not in (Installment.Status.SCHEDULED, Installment.Status.FAILED):
        raise IllegalTransition(f"A {locked.status} installment cannot be rescheduled.")
    old = locked.due_date
    locked.due_date, locked.next_attempt_at = due_date, _start_of(due_date)
    locked.save(update_fields=["due_date", "next_attempt_at"])
    _event(
        locked.order,
        "installment.rescheduled",
        installment=locked,
        source=source,
        data={"from": old.isoformat(), "to": due_date.isoformat()},
    ).save()
    return locked


@transaction.atomic
def installment_retry_now(*, installment: Installment, source: str = "staff") -> Installment:
    """Make a failed installment due now (the next collection run takes it)."""
    locked = Installment.objects.select_for_update(no_key=True).get(pk=installment.pk)
    if locked.status != Installment.Status.FAILED:
        raise IllegalTransition(f"Only a failed installment can be retried now (this one is {locked.status}).")
    locked.next_attempt_at = timezone.now()
    locked.save(update_fields=["next_attempt_at"])
    _event(locked.order, "installment.retry_requested", installment=locked, source=source).save()
    return locked


def order_remaining(order: InstallmentOrder) -> int:
    return order.installments.filter(status__in=OPEN).aggregate(total=Sum("amount"))["total"] or 0
