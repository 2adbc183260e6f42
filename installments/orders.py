"""Installment orders: create one (with its down payment), pay early, cancel,
reschedule an installment, retry a failed one now.

An early payment claims the installments it pays with its one charge's key
(`pay:<order>:<n>`), the down payment is claimed with the order (`down:<order>`); either
charge is made with no lock held and booked by installment_record, or, if the process
dies first, by the collector once the claim lapses.
"""

import hashlib
from datetime import date, datetime

from django.db import transaction
from django.db.models import Sum
from django.utils import timezone

from config.errors import CardDeclined, Conflict, IllegalTransition, InsufficientFunds, InvalidRequest
from config.faults import fault_point
from config.metadata import metadata_validate
from installments.bookkeeping import OPEN, Closing, installment_record, orders_close
from installments.charging import _charge, _description
from installments.events import timeline_event
from installments.models import Installment, InstallmentEvent, InstallmentOrder
from installments.schedule import schedule_equal, schedule_explicit
from payments.charges import charge_card, charge_create, charge_resume
from payments.models import Charge

Status = Installment.Status
Claim = Installment.ClaimSource


def _start_of(day: date) -> datetime:
    return timezone.make_aware(datetime.combine(day, datetime.min.time()))


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

    A down payment is installment 0, created `processing` with the order (so whatever
    its charge does later is booked against the order) and charged at once with the key
    `down:<order id>`, as POST /charges would: wallet first, then the saved card.
    - Nothing to charge it to (the wallet short and no card): InsufficientFunds (402),
      naming down_payment, and no order at all (it is rolled back with the attempt).
    - The card declined: the order is returned `canceled`, installment 0 `failed` with
      its failed charge (the attempt is recorded, no money taken), as a declined charge
      is a `failed` charge and not an error.
    - Left pending by an unreachable provider: the order is returned active with
      installment 0 `processing`; the collector books the charge's outcome once it
      resolves (a later decline cancels the order the same way).
    Raises InvalidRequest naming the field for a bad schedule or metadata (Stripe's limits).

    Resumable on `idempotency_key` (unique per merchant, config/api/idempotency.py): a
    retry finds the order that carries it and finishes its down payment if the process
    died before the card was asked (the charge's own key `down:<order>` makes that ask
    once); no second order, no second down payment.
    """
    metadata = metadata_validate(metadata or {})
    currency = currency.lower()
    if idempotency_key:
        existing = InstallmentOrder.objects.filter(merchant=merchant, idempotency_key=idempotency_key).first()
        if existing is not None:
            return _order_resume(existing, customer=customer, amount=amount, currency=currency)
    if down_payment < 0 or down_payment >= amount:
        raise InvalidRequest("down_payment must be at least 0 and less than the amount.", param="down_payment")
    owed = amount - down_payment
    if schedule is not None:  # given, even empty: it is the schedule (schedule_explicit refuses [])
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

    now = timezone.now()
    with transaction.atomic():
        order = InstallmentOrder.objects.create(
            merchant=merchant,
            customer=customer,
            amount=amount,
            currency=currency,
            down_payment=down_payment,
            interval=interval or "",
            interval_count=interval_count,
            description=description,
            metadata=metadata or {},
            idempotency_key=idempotency_key or None,
        )
        rows = [
            Installment(order=order, sequence=i + 1, due_date=due, amount=part, next_attempt_at=_start_of(due))
            for i, (due, part) in enumerate(parts)
        ]
        timeline = [
            timeline_event(
                order,
                "installment_order.created",
                to_status="active",
                data={"amount": amount, "down_payment": down_payment, "installments": len(parts)},
            )
        ]
        down = None
        if down_payment:
            down = Installment(
                order=order,
                sequence=0,
                due_date=timezone.localdate(),
                amount=down_payment,
                next_attempt_at=now,
                status=Status.PROCESSING,
                claimed_at=now,
                claim_source=Claim.DOWN_PAYMENT,
                charge_key=f"down:{order.pk}",
            )
            rows.insert(0, down)
            timeline.append(
                timeline_event(
                    order,
                    "installment.processing",
                    installment=down,
                    to_status=Status.PROCESSING,
                    data={"charge_key": down.charge_key, "down_payment": True},
                )
            )
        Installment.objects.bulk_create(rows)
        InstallmentEvent.objects.bulk_create(timeline)
        charge = _down_payment_begin(order=order, down=down, now=now) if down is not None else None
    if charge is not None and charge.status == Charge.Status.PENDING:
        # Committed with the order (its wallet part held), the card part is charged with no
        # lock held; a process dying here leaves it to the collector and the charge resolver.
        fault_point("intent_committed")
        _down_payment_finish(down=down, charge=charge_card(charge), now=now)
    return order


def _down_payment_finish(*, down: Installment, charge: Charge, now: datetime) -> None:
    installment_record(
        installment_id=down.pk,
        charge_key=down.charge_key,
        charge=charge,
        error=charge.failure_reason,
        now=now,
        source="api",
    )


def _order_resume(order: InstallmentOrder, *, customer, amount: int, currency: str) -> InstallmentOrder:
    """A retry of the create that made `order`: the same order; a down payment whose card
    part was never asked for is asked now (charge_resume, with the charge's own key)."""
    if (order.customer_id, order.amount, order.currency) != (customer.pk, amount, currency):
        raise Conflict("This Idempotency-Key was already used for a different order.", param="Idempotency-Key")
    down = order.installments.filter(sequence=0, status=Status.PROCESSING).first()
    if down is not None:
        charge = Charge.objects.filter(merchant_id=order.merchant_id, idempotency_key=down.charge_key).first()
        if charge is not None:
            charge = charge_resume(charge)
            _down_payment_finish(down=down, charge=charge, now=timezone.now())
    order.refresh_from_db()
    return order


def _down_payment_begin(*, order: InstallmentOrder, down: Installment, now: datetime) -> Charge:
    """The down payment's charge, begun in the transaction that creates the order: made in
    full if the wallet covers it (installment 0 then `paid`), else left `pending` with the
    wallet part held, for the card. One that cannot even begin (the wallet short and no
    card, no provider configured) is raised, naming down_payment, and takes the order with
    it in the rollback: nothing is recorded."""
    try:
        charge = charge_create(
            merchant=order.merchant,
            customer=order.customer,
            amount=down.amount,
            currency=order.currency,
            idempotency_key=down.charge_key,
            order_id=down.charge_key,
            description=_description(down),
            defer_card=True,
        )
    except (InsufficientFunds, InvalidRequest) as exc:
        raise type(exc)(f"The down payment cannot be collected: {exc.message}", param="down_payment")
    if charge.status != Charge.Status.PENDING:
        installment_record(
            installment_id=down.pk, charge_key=down.charge_key, charge=charge, error="", now=now, source="api"
        )
    return charge


def installment_order_pay(
    *, order: InstallmentOrder, amount: int | None = None, idempotency_key: str | None = None
) -> InstallmentOrder:
    """Pay the next open installment now, or (amount = the remaining balance) all of them,
    with one charge keyed `pay:<order>:<n>` (n counts the order's early payments, so a
    retry after a decline is a new charge). The installments are claimed with that key
    first (locks: the order, then its installments), so whatever happens to this
    process the collector finds and books the charge instead of making another.

    Raises InvalidRequest for another amount, IllegalTransition (409) unless the order is
    active and none of its installments is being collected, InsufficientFunds (402) if
    the charge cannot be made (the wallet short and no card), CardDeclined (402,
    card_declined) if the card is declined (the installments are then as they were).
    A charge left pending leaves them `processing` until it resolves.

    Resumable on `idempotency_key`: the charge's key is then derived from it
    (`pay:<order>:<hash>`), so a retry finds that charge and answers from it (asking the
    card if the process died before it did) instead of paying the next installment too.
    """
    now = timezone.now()
    key = None
    if idempotency_key:
        key = f"pay:{order.pk}:{hashlib.sha256(idempotency_key.encode()).hexdigest()[:32]}"
        targets = list(Installment.objects.filter(order_id=order.pk, charge_key=key).order_by("sequence"))
        if targets:  # claimed by this request before: finish that payment, start no other
            return _early_payment_finish(order=order, key=key, targets=targets, now=now)
    with transaction.atomic():
        locked = (
            InstallmentOrder.objects.select_for_update(no_key=True, of=("self",))
            .select_related("merchant", "customer")
            .get(pk=order.pk)
        )
        if locked.status != InstallmentOrder.Status.ACTIVE:
            raise IllegalTransition(f"A {locked.status} order cannot be paid.")
        open_rows = list(
            locked.installments.select_for_update(no_key=True)
            .filter(status__in=[Status.SCHEDULED, Status.FAILED])
            .order_by("sequence")
        )
        if locked.installments.filter(status=Status.PROCESSING).exists():
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
        locked.early_payments += 1
        locked.save(update_fields=["early_payments", "updated_at"])
        key = key or f"pay:{locked.pk}:{locked.early_payments}"
        InstallmentEvent.objects.bulk_create(
            timeline_event(
                locked,
                "installment.processing",
                installment=target,
                from_status=target.status,
                to_status=Status.PROCESSING,
                data={"charge_key": key, "early_payment": True},
            )
            for target in targets
        )
        Installment.objects.filter(pk__in=[t.pk for t in targets]).update(
            status=Status.PROCESSING, claimed_at=now, claim_source=Claim.EARLY_PAYMENT, charge_key=key
        )
    fault_point("intent_committed")
    return _early_payment_finish(order=locked, key=key, targets=targets, now=now)


def _early_payment_finish(
    *, order: InstallmentOrder, key: str, targets: list[Installment], now: datetime
) -> InstallmentOrder:
    """Make (or find, or resume: charge_create is idempotent on the key) the early
    payment's one charge and record it on the installments it pays."""
    locked = order
    charge, error = _charge(
        order=locked, key=key, amount=sum(t.amount for t in targets), description=f"early payment of order {locked.pk}"
    )
    for target in targets:
        installment_record(
            installment_id=target.pk,
            charge_key=key,
            charge=charge,
            error=f"{type(error).__name__}: {error.message}" if error else charge.failure_reason,
            now=now,
            source="api",
        )
    if error is not None:
        raise error  # could not be charged at all: InsufficientFunds (no card), InvalidRequest
    if charge.status == Charge.Status.FAILED:
        raise CardDeclined(f"The card was declined ({charge.failure_reason.rstrip('.') or 'card_declined'}).")
    locked.refresh_from_db()
    return locked


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
    timeline: list = []
    orders_close(closings=[Closing(locked, InstallmentOrder.Status.CANCELED)], timeline=timeline, source=source)
    InstallmentEvent.objects.bulk_create(timeline)
    return locked


@transaction.atomic
def installment_reschedule(*, installment: Installment, due_date: date, source: str = "staff") -> Installment:
    """Move an open installment of an active order to a new due date (staff). Its next
    attempt is then. Locks the order, then the installment; raises IllegalTransition."""
    order = InstallmentOrder.objects.select_for_update(no_key=True).get(pk=installment.order_id)
    if order.status != InstallmentOrder.Status.ACTIVE:
        raise IllegalTransition(f"An installment of a {order.status} order cannot be rescheduled.")
    locked = Installment.objects.select_for_update(no_key=True).get(pk=installment.pk)
    if locked.status not in (Installment.Status.SCHEDULED, Installment.Status.FAILED):
        raise IllegalTransition(f"A {locked.status} installment cannot be rescheduled.")
    old = locked.due_date
    locked.due_date, locked.next_attempt_at = due_date, _start_of(due_date)
    locked.save(update_fields=["due_date", "next_attempt_at"])
    timeline_event(
        locked.order,
        "installment.rescheduled",
        installment=locked,
        source=source,
        data={"from": old.isoformat(), "to": due_date.isoformat()},
    ).save()
    return locked


@transaction.atomic
def installment_retry_now(*, installment: Installment, source: str = "staff") -> Installment:
    """Make a failed installment of an active order due now (the next collection run
    takes it). Locks the order, then the installment; raises IllegalTransition."""
    order = InstallmentOrder.objects.select_for_update(no_key=True).get(pk=installment.order_id)
    if order.status != InstallmentOrder.Status.ACTIVE:
        raise IllegalTransition(f"An installment of a {order.status} order cannot be retried.")
    locked = Installment.objects.select_for_update(no_key=True).get(pk=installment.pk)
    if locked.status != Installment.Status.FAILED:
        raise IllegalTransition(f"Only a failed installment can be retried now (this one is {locked.status}).")
    locked.next_attempt_at = timezone.now()
    locked.save(update_fields=["next_attempt_at"])
    timeline_event(locked.order, "installment.retry_requested", installment=locked, source=source).save()
    return locked


def order_remaining(order: InstallmentOrder) -> int:
    return order.installments.filter(status__in=OPEN).aggregate(total=Sum("amount"))["total"] or 0
