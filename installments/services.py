"""Writes for installments: create orders, collect due installments, dunning, pay early,
cancel, reschedule.

Lock order, everywhere: the order row, then its installments.

One attempt to collect an installment makes at most one charge, whoever makes it. The
attempt is claimed (status `processing`) in a short transaction that also stores the
idempotency key of that charge on the installment (`charge_key`): `inst:<id>:<attempt>`
when the collector claims it (SKIP LOCKED), `pay:<order>:<n>` for an early payment (one
charge for the installments it pays), `down:<order>` for the down payment. The charge is
made outside any lock with that key, and its outcome recorded in a second short
transaction that checks the installment is still on that key. If the process dies in
between, or the provider cannot be reached and the charge stays pending, the claim's
lease lapses and the collector re-claims the row: it looks the charge up by the stored
key (or makes it, with that same key: charges are idempotent on it) and records the
outcome. A pending charge keeps its installments `processing` until it resolves.

The raw client Idempotency-Key never reaches charge_create: every key is derived here
and scoped to one installment attempt or one order.
"""

import hashlib
import logging
import time
from collections.abc import Iterator
from datetime import date, datetime, timedelta

from django.conf import settings
from django.db import connection, transaction
from django.db.models import Case, CharField, F, Sum, TextField, Value, When
from django.db.models.functions import Cast, Concat
from django.utils import timezone

from config.errors import CardDeclined, Conflict, IllegalTransition, InsufficientFunds, InvalidRequest
from config.faults import fault_point
from config.metadata import metadata_validate
from installments.models import Installment, InstallmentCharge, InstallmentEvent, InstallmentOrder
from installments.schedule import schedule_equal, schedule_explicit
from payments.charges import WalletCharge, charge_card, charge_create, charge_resume, charges_from_wallets
from payments.models import Charge
from wallets.services import wallet_debits_lock
from webhooks.services import event_emit, events_emit

logger = logging.getLogger("paydesk.installments")

Status = Installment.Status
Claim = Installment.ClaimSource
OPEN = (Status.SCHEDULED, Status.PROCESSING, Status.FAILED)
CLAIM_LEASE = timedelta(minutes=10)
_clock = time.monotonic  # the time budget's clock (tests move it)


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


def collection_key(installment_id, attempt: int) -> str:
    """The charge key of the collector's attempt number `attempt` of an installment."""
    return f"inst:{installment_id}:{attempt}"


def _collection_key_sql(rows: list[Installment]):
    """collection_key(pk, attempts + 1) as an UPDATE expression: computed by PostgreSQL
    from each row (the text of a uuid is the same there as in Python), else spelled out
    row by row (SQLite stores uuids as bare hex)."""
    if connection.vendor == "postgresql":
        attempt = Cast(F("attempts") + 1, TextField())
        return Concat(Value("inst:"), Cast("id", TextField()), Value(":"), attempt, output_field=CharField())
    return Case(*(When(pk=row.pk, then=Value(row.charge_key)) for row in rows), output_field=CharField())


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
            _event(
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
                _event(
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


# --- Collection -------------------------------------------------------------------------


def _claimable():
    return Installment.objects.select_for_update(skip_locked=True, of=("self",)).select_related(
        "order__merchant", "order__customer"
    )


def installments_claim(*, now: datetime, chunk: int) -> list[Installment]:
    """Claim up to `chunk` installments for this collector: first those left `processing`
    (by any path) past the lease, then due ones of active orders in due order. SELECT ...
    FOR UPDATE SKIP LOCKED, so concurrent collectors take disjoint rows and never wait
    for each other; each is an index scan that stops after the chunk, however large the
    backlog. A due one becomes `processing` with its attempt counted and that attempt's
    charge key stored; a lapsed one is re-claimed as it is, charge key included, so its
    charge is looked up, not made again (whatever its order's status: the one-by-one
    path then books it, or closes it like its order). Every claim writes a timeline
    event (one INSERT per chunk)."""
    with transaction.atomic():
        rows = list(
            _claimable()
            .filter(status=Status.PROCESSING, claimed_at__lt=now - CLAIM_LEASE)
            .order_by("claimed_at")[:chunk]
        )
        if len(rows) < chunk:
            rows += list(
                _claimable()
                .filter(
                    status__in=[Status.SCHEDULED, Status.FAILED],
                    next_attempt_at__lte=now,
                    order__status=InstallmentOrder.Status.ACTIVE,
                )
                .order_by("next_attempt_at")[: chunk - len(rows)]
            )
        if not rows:
            return rows
        timeline = []
        fresh, stale = [], []
        for row in rows:
            if row.status == Status.PROCESSING:
                row.reclaimed = True
                stale.append(row.pk)
                timeline.append(
                    _event(
                        row.order,
                        "installment.reclaimed",
                        installment=row,
                        from_status=row.status,
                        to_status=Status.PROCESSING,
                        source="collection",
                        data={
                            "charge_key": row.charge_key,
                            "claimed_at": row.claimed_at.isoformat() if row.claimed_at else None,
                            "by": row.claim_source,
                        },
                    )
                )
            else:
                row.reclaimed = False
                fresh.append(row.pk)
                previous, row.attempts = row.status, row.attempts + 1
                row.claim_source, row.charge_key = Claim.COLLECTION, collection_key(row.pk, row.attempts)
                timeline.append(
                    _event(
                        row.order,
                        "installment.processing",
                        installment=row,
                        from_status=previous,
                        to_status=Status.PROCESSING,
                        source="collection",
                        data={"attempt": row.attempts, "charge_key": row.charge_key},
                    )
                )
            row.status, row.claimed_at = Status.PROCESSING, now
        if fresh:
            Installment.objects.filter(pk__in=fresh).update(
                status=Status.PROCESSING,
                attempts=F("attempts") + 1,
                claimed_at=now,
                claim_source=Claim.COLLECTION,
                charge_key=_collection_key_sql([row for row in rows if not row.reclaimed]),
            )
        if stale:
            Installment.objects.filter(pk__in=stale).update(claimed_at=now)
        InstallmentEvent.objects.bulk_create(timeline)
    return rows


def _charge(*, order: InstallmentOrder, key: str, amount: int, description: str):
    """Make the charge of `key` (or get the one already made under it: charge_create is
    idempotent on the key). Returns (charge, None), or (None, error) when the charge
    could not even be started and nothing was charged (no wallet money and no card...)."""
    try:
        charge = charge_create(
            merchant=order.merchant,
            customer=order.customer,
            amount=amount,
            currency=order.currency,
            idempotency_key=key,
            order_id=key,
            description=description,
        )
    except (InsufficientFunds, InvalidRequest) as exc:
        existing = Charge.objects.filter(merchant_id=order.merchant_id, idempotency_key=key).first()
        if existing is None:
            return None, exc
        return existing, None
    return charge, None


def _key_amount(installment: Installment) -> int:
    """What the charge of the installment's key is for: the installment, or every
    installment an early payment claimed under the same key."""
    if installment.claim_source != Claim.EARLY_PAYMENT:
        return installment.amount
    return Installment.objects.filter(order_id=installment.order_id, charge_key=installment.charge_key).aggregate(
        total=Sum("amount")
    )["total"]


def _description(installment: Installment) -> str:
    order_id = installment.order_id
    if installment.claim_source == Claim.EARLY_PAYMENT:
        return f"early payment of order {order_id}"
    if installment.claim_source == Claim.DOWN_PAYMENT:
        return f"down payment of order {order_id}"
    return f"installment {installment.sequence} of order {order_id}"


def _order_status_locked(order_id) -> str:
    """The order's status read under its row lock: waits for a transaction that is
    closing the order right now, so its outcome is seen."""
    with transaction.atomic():
        return (
            InstallmentOrder.objects.select_for_update(no_key=True)
            .filter(pk=order_id)
            .values_list("status", flat=True)
            .get()
        )


def installment_collect(*, installment: Installment, now: datetime, source: str = "collection") -> str:
    """Finish one claimed attempt: find the charge already made under its key (a
    re-claimed row: the first claimer may have charged, then died or been left pending)
    or, if the order is still active (checked under its lock), make it; then record the
    outcome. No lock is held while charging. Safe to run twice for one claim: the key
    finds the same charge and the second record is a no-op. Returns the status."""
    order = installment.order
    key = installment.charge_key
    charge = error = None
    if getattr(installment, "reclaimed", True):
        charge = Charge.objects.filter(merchant_id=order.merchant_id, idempotency_key=key).first()
    if charge is None:
        order_status = _order_status_locked(installment.order_id)
        if order_status != InstallmentOrder.Status.ACTIVE:
            return installment_record(
                installment_id=installment.pk,
                charge_key=key,
                charge=None,
                error=f"the order is {order_status}",
                now=now,
                source=source,
            )
        charge, error = _charge(
            order=order, key=key, amount=_key_amount(installment), description=_description(installment)
        )
    return installment_record(
        installment_id=installment.pk,
        charge_key=key,
        charge=charge,
        error=f"{type(error).__name__}: {error.message}" if error else charge.failure_reason,
        now=now,
        source=source,
    )


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
            _event(
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
        _event(
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
            _event(
                order, f"installment.{to}", installment=sibling, from_status=sibling.status, to_status=to, source=source
            )
        )
    if siblings:
        Installment.objects.filter(pk__in=[s.pk for s in siblings]).update(status=to)
    timeline.append(
        _event(
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


def _collect_from_wallets(rows: list[Installment], *, now: datetime) -> tuple[list[Installment], int]:
    """The set-based fast path of collection: in one transaction, charge every freshly
    claimed installment of an active order that its customer's wallet covers
    (charges_from_wallets), and book them paid, their orders completed when nothing is
    left open. Returns the rows left for installment_collect (re-claimed attempts, early
    and down payments, what a wallet cannot cover, orders no longer active) and how many
    were paid here. Locks the orders, then their installments, then the ledger accounts.
    On any error nothing of it happens and every row goes the one-by-one way."""
    fast = [r for r in rows if not r.reclaimed and r.claim_source == Claim.COLLECTION]
    # An order with a row that must go one by one goes one by one entirely, in order.
    one_by_one_orders = {r.order_id for r in rows if r.reclaimed or r.claim_source != Claim.COLLECTION}
    fast = [r for r in fast if r.order_id not in one_by_one_orders]
    if not fast or not settings.INSTALLMENT_COLLECT_SET_BASED:
        return rows, 0
    try:
        with transaction.atomic():
            paid = _collect_from_wallets_locked(fast, now=now)
    except _OutOfOrder:
        return rows, 0
    except Exception:
        logger.exception("set-based collection failed; collecting the chunk one by one")
        return rows, 0
    return [r for r in rows if r.pk not in paid], len(paid)


class _OutOfOrder(Exception):
    """An order's earlier installment was left to the one-by-one path while a later one
    was paid here: its failure might close the order, which must then not have been
    charged for the later one. Rolled back; the chunk goes one by one, in order."""


def _collect_from_wallets_locked(rows: list[Installment], *, now: datetime) -> set:
    order_ids = sorted({r.order_id for r in rows})
    orders = {
        o.pk: o
        for o in InstallmentOrder.objects.select_for_update(no_key=True, of=("self",))  # not the merchant row
        .select_related("merchant")
        .filter(pk__in=order_ids)
        .order_by("pk")
    }
    mine = {
        i.pk: i
        for i in Installment.objects.select_for_update(no_key=True)
        .filter(pk__in=[r.pk for r in rows], status=Status.PROCESSING)
        .order_by("order_id", "pk")
    }
    rows = [
        r
        for r in rows
        if r.pk in mine
        and mine[r.pk].charge_key == r.charge_key
        and orders[r.order_id].status == InstallmentOrder.Status.ACTIVE
    ]
    groups: dict[tuple, list[Installment]] = {}
    for row in rows:
        order = orders[row.order_id]
        groups.setdefault((order.merchant_id, order.currency), []).append(row)
    # Every group's ledger accounts at once, in pk order: two collectors whose chunks mix
    # merchants in different orders would otherwise deadlock group by group.
    wallet_debits_lock(debits=[(*owner, row.order.customer_id) for owner, group in groups.items() for row in group])
    paid: dict = {}
    for (_, currency), group in groups.items():
        merchant = orders[group[0].order_id].merchant
        charges = charges_from_wallets(
            merchant=merchant,
            currency=currency,
            charges=[
                WalletCharge(
                    customer=r.order.customer,
                    amount=r.amount,
                    idempotency_key=r.charge_key,
                    order_id=r.charge_key,
                    description=_description(r),
                )
                for r in group
            ],
        )
        left_behind = set()
        for row, charge in zip(group, charges, strict=True):
            if charge is not None and charge.status == "succeeded":
                if row.order_id in left_behind:
                    raise _OutOfOrder
                paid[row.pk] = (row, charge)
            else:
                left_behind.add(row.order_id)
    if not paid:
        return set()
    Installment.objects.filter(pk__in=list(paid)).update(
        status=Status.PAID, paid_at=now, last_error="", claimed_at=None
    )
    InstallmentCharge.objects.bulk_create(
        [InstallmentCharge(installment=r, charge=c, attempt=r.attempts) for r, c in paid.values()]
    )
    timeline, events = [], {}
    for row, charge in paid.values():
        row.status, row.paid_at, row.last_error, row.claimed_at = Status.PAID, now, "", None
        order = orders[row.order_id]
        timeline.append(
            _event(
                order,
                "installment.paid",
                installment=row,
                from_status=Status.PROCESSING,
                to_status=Status.PAID,
                source="collection",
                data={"attempt": row.attempts, "charge": str(charge.pk), "charge_key": row.charge_key, "error": None},
            )
        )
        events.setdefault(order.merchant_id, (order.merchant, []))[1].append(
            ("installment.paid", installment_data(row))
        )
    for merchant, merchant_events in events.values():
        events_emit(merchant=merchant, events=merchant_events)
    touched = {row.order_id for row, _ in paid.values()}
    still_open = set(
        Installment.objects.filter(order_id__in=touched, status__in=OPEN).values_list("order_id", flat=True).distinct()
    )
    _orders_complete([orders[order_id] for order_id in sorted(touched - still_open)], timeline, "collection")
    InstallmentEvent.objects.bulk_create(timeline)
    return set(paid)


def _orders_complete(orders: list[InstallmentOrder], timeline: list, source: str) -> None:
    """_order_close(order, COMPLETED, ...) for several locked, active orders with nothing
    left open (so no sibling to close), set-based."""
    if not orders:
        return
    completed = InstallmentOrder.Status.COMPLETED
    InstallmentOrder.objects.filter(pk__in=[o.pk for o in orders]).update(status=completed, updated_at=timezone.now())
    events: dict = {}
    for order in orders:
        previous, order.status = order.status, completed
        timeline.append(
            _event(order, f"installment_order.{completed}", from_status=previous, to_status=completed, source=source)
        )
        events.setdefault(order.merchant_id, (order.merchant, []))[1].append(
            (f"installment_order.{completed}", order_data(order))
        )
    for merchant, merchant_events in events.values():
        events_emit(merchant=merchant, events=merchant_events)


def installments_collect(
    *,
    now: datetime | None = None,
    limit: int | None = None,
    chunk: int | None = None,
    budget_seconds: float | None = None,
) -> Iterator[dict]:
    """Collect due installments, chunk by chunk, until none is due, `limit` were
    collected or `budget_seconds` have passed (checked between chunks). Memory stays
    flat whatever the backlog; stop at any point and the next run resumes. Yields
    per-chunk counts by resulting status. Safe to run in several processes at once."""
    now = now or timezone.now()
    chunk = chunk or settings.INSTALLMENT_COLLECT_CHUNK
    deadline = _clock() + budget_seconds if budget_seconds else None
    done = 0
    while limit is None or done < limit:
        if deadline is not None and _clock() >= deadline:
            return
        rows = installments_claim(now=now, chunk=min(chunk, limit - done) if limit else chunk)
        if not rows:
            return
        counts: dict[str, int] = {}
        one_by_one, paid = _collect_from_wallets(rows, now=now)
        if paid:
            counts[Status.PAID] = paid
        for installment in one_by_one:
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
            _event(
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
    _event(locked.order, "installment.retry_requested", installment=locked, source=source).save()
    return locked


def order_remaining(order: InstallmentOrder) -> int:
    return order.installments.filter(status__in=OPEN).aggregate(total=Sum("amount"))["total"] or 0
