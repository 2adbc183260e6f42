"""Collection of due installments: claim a chunk (SELECT ... FOR UPDATE SKIP LOCKED, so
several collectors share the work and none charges an installment twice), charge what
customers' wallets cover set-based, the rest one by one, and book the outcomes.

A claim stores the idempotency key of the attempt's one charge on the installment
(`inst:<id>:<attempt>`); the charge is made outside any lock with that key and its
outcome booked in a second short transaction (installments/bookkeeping.py). A claim
whose process died, or whose charge is still pending, lapses after CLAIM_LEASE and is
re-claimed as it is: its charge is looked up by the key, never made twice.
"""

import logging
import os
import time
from collections.abc import Iterator
from datetime import datetime, timedelta

from django.conf import settings
from django.db import connection, transaction
from django.db.models import Case, CharField, F, Q, TextField, Value, When
from django.db.models.functions import Cast, Concat
from django.utils import timezone

from config.rows import insert_many
from installments.bookkeeping import installment_record, installments_paid
from installments.charging import _charge, _description, _key_amount
from installments.events import timeline_event
from installments.models import Installment, InstallmentOrder
from payments.charges import WalletCharge, charges_from_wallets
from payments.identity.models import Merchant
from payments.models import Charge
from wallets.ledger import shard_name, shard_names
from wallets.services import wallet_debits_lock

logger = logging.getLogger("paydesk.installments")

Status = Installment.Status
Claim = Installment.ClaimSource
CLAIM_LEASE = timedelta(minutes=10)
_clock = time.monotonic  # the time budget's clock (tests move it)


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


def _claimable():
    return Installment.objects.select_for_update(skip_locked=True, of=("self",)).select_related("order__customer")


def _merchants_attach(rows: list[Installment]) -> None:
    """Give each row's order its merchant, one instance per merchant: a chunk spans few
    merchants, and joined in the claim every row would build its own (a wide row)."""
    merchants = Merchant.objects.in_bulk({row.order.merchant_id for row in rows})
    for row in rows:
        row.order.merchant = merchants[row.order.merchant_id]


def installments_claim(*, now: datetime, chunk: int, at: datetime | None = None) -> list[Installment]:
    """Claim up to `chunk` installments for this collector: first those left `processing`
    (by any path) past the lease, then due ones of active orders in due order. SELECT ...
    FOR UPDATE SKIP LOCKED, so concurrent collectors take disjoint rows and never wait
    for each other; each is an index scan that stops after the chunk, however large the
    backlog. A due one becomes `processing` with its attempt counted and that attempt's
    charge key stored; a lapsed one is re-claimed as it is, charge key included, so its
    charge is looked up, not made again (whatever its order's status: the one-by-one
    path then books it, or closes it like its order). Every claim writes a timeline
    event (one INSERT per chunk). `at` (default `now`) is the claim's time, for the
    lease; a released claim (no claim time) is taken like a lapsed one, first."""
    at = at or now
    with transaction.atomic():
        rows = list(
            _claimable()
            .filter(Q(claimed_at__isnull=True) | Q(claimed_at__lt=at - CLAIM_LEASE), status=Status.PROCESSING)
            .order_by(F("claimed_at").asc(nulls_first=True))[:chunk]
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
        _merchants_attach(rows)
        timeline = []
        fresh, stale = [], []
        for row in rows:
            if row.status == Status.PROCESSING:
                row.reclaimed = True
                stale.append(row.pk)
                timeline.append(
                    timeline_event(
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
                    timeline_event(
                        row.order,
                        "installment.processing",
                        installment=row,
                        from_status=previous,
                        to_status=Status.PROCESSING,
                        source="collection",
                        data={"attempt": row.attempts, "charge_key": row.charge_key},
                    )
                )
            row.status, row.claimed_at = Status.PROCESSING, at
        if fresh:
            Installment.objects.filter(pk__in=fresh).update(
                status=Status.PROCESSING,
                attempts=F("attempts") + 1,
                claimed_at=at,
                claim_source=Claim.COLLECTION,
                charge_key=_collection_key_sql([row for row in rows if not row.reclaimed]),
            )
        if stale:
            Installment.objects.filter(pk__in=stale).update(claimed_at=at)
        insert_many(timeline)
    return rows


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


def _collect_from_wallets(rows: list[Installment], *, now: datetime) -> tuple[list[Installment], int]:
    """The set-based fast path of collection: charge every freshly claimed installment of
    an active order that its customer's wallet covers (charges_from_wallets), and book
    them paid, their orders completed when nothing is left open. Returns the rows left
    for installment_collect (re-claimed attempts, early and down payments, what a wallet
    cannot cover, orders no longer active) and how many were paid here.

    One transaction per merchant-balance shard (wallets.ledger.shard_name of the
    customer): each locks its orders, then their installments, then its accounts, and
    commits, so two collectors of one merchant work on different shards side by side
    instead of taking turns on a chunk that reaches every shard. A customer's rows (so
    an order's) share a shard. Each collector starts at the shard its process id points
    to. On any error that shard's rows go the one-by-one way; the others are unaffected."""
    fast = [r for r in rows if not r.reclaimed and r.claim_source == Claim.COLLECTION]
    # An order with a row that must go one by one goes one by one entirely, in order.
    one_by_one_orders = {r.order_id for r in rows if r.reclaimed or r.claim_source != Claim.COLLECTION}
    fast = [r for r in fast if r.order_id not in one_by_one_orders]
    if not fast or not settings.INSTALLMENT_COLLECT_SET_BASED:
        return rows, 0
    paid: set = set()
    for group in _by_balance_shard(fast):
        try:
            with transaction.atomic():
                paid |= _collect_from_wallets_locked(group, now=now)
        except _OutOfOrder:
            continue
        except Exception:
            logger.exception("set-based collection failed; collecting these rows one by one")
    return [r for r in rows if r.pk not in paid], len(paid)


def _first_shard() -> int:
    """Where this collector starts its round of the balance shards: concurrent collectors
    are different processes, so most start on different shards."""
    return os.getpid()


def _by_balance_shard(rows: list[Installment]) -> list[list[Installment]]:
    groups: dict[str, list[Installment]] = {}
    for row in rows:
        groups.setdefault(shard_name(row.order.customer_id), []).append(row)
    names = shard_names()
    start = _first_shard() % len(names)
    return [groups[name] for name in names[start:] + names[:start] if name in groups]


class _OutOfOrder(Exception):
    """An order's earlier installment was left to the one-by-one path while a later one
    was paid here: its failure might close the order, which must then not have been
    charged for the later one. Rolled back; that shard's rows go one by one, in order."""


def _collect_from_wallets_locked(rows: list[Installment], *, now: datetime) -> set:
    order_ids = sorted({r.order_id for r in rows})
    orders = {
        o.pk: o
        for o in InstallmentOrder.objects.select_for_update(no_key=True, of=("self",))  # not the merchant row
        .select_related("merchant")
        .filter(pk__in=order_ids)
        .order_by("pk")
    }
    still_claimed = dict(  # id -> charge key of what is still processing: no model per row needed
        Installment.objects.select_for_update(no_key=True)
        .filter(pk__in=[r.pk for r in rows], status=Status.PROCESSING)
        .order_by("order_id", "pk")
        .values_list("pk", "charge_key")
    )
    rows = [
        r
        for r in rows
        if still_claimed.get(r.pk) == r.charge_key and orders[r.order_id].status == InstallmentOrder.Status.ACTIVE
    ]
    groups: dict[tuple, list[Installment]] = {}
    for row in rows:
        order = orders[row.order_id]
        groups.setdefault((order.merchant_id, order.currency), []).append(row)
    # Every group's ledger accounts at once, in pk order: two collectors whose chunks mix
    # merchants in different orders would otherwise deadlock group by group.
    locked = wallet_debits_lock(
        debits=[(*owner, row.order.customer_id) for owner, group in groups.items() for row in group]
    )
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
            locked=locked,
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
    timeline: list = []
    installments_paid(paid=list(paid.values()), orders=orders, now=now, source="collection", timeline=timeline)
    insert_many(timeline)
    return set(paid)


def installments_collect(
    *,
    now: datetime | None = None,
    limit: int | None = None,
    chunk: int | None = None,
    budget_seconds: float | None = None,
) -> Iterator[dict]:
    """Collect due installments, chunk by chunk, until none is due, `limit` were
    collected or `budget_seconds` have passed. Memory stays flat whatever the backlog;
    stop at any point and the next run resumes. Yields per-chunk counts by resulting
    status. Safe to run in several processes at once.

    No claim outlives its lease: a chunk's one-by-one part (a provider call each) stops
    at the deadline, or once half the lease has passed since the claim, and releases the
    rows it has not reached (installments_release); past the deadline the run ends,
    otherwise its next claim takes them first. Claims are stamped with `now` plus the
    run's elapsed time, so a long run's later claims are fresh too."""
    now = now or timezone.now()
    chunk = chunk or settings.INSTALLMENT_COLLECT_CHUNK
    started = _clock()
    deadline = started + budget_seconds if budget_seconds else None
    done = 0
    while limit is None or done < limit:
        claimed = _clock()
        if deadline is not None and claimed >= deadline:
            return
        rows = installments_claim(
            now=now,
            at=now + timedelta(seconds=claimed - started),
            chunk=min(chunk, limit - done) if limit else chunk,
        )
        if not rows:
            return
        counts: dict[str, int] = {}
        one_by_one, paid = _collect_from_wallets(rows, now=now)
        if paid:
            counts[Status.PAID] = paid
        stop = min(claimed + CLAIM_LEASE.total_seconds() / 2, deadline or float("inf"))
        for n, installment in enumerate(one_by_one):
            if _clock() >= stop:
                installments_release(one_by_one[n:])
                done += len(rows) - len(one_by_one) + n
                break
            try:
                status = installment_collect(installment=installment, now=now)
            except Exception:  # one bad installment must not stop the run; its claim lapses and it is retried
                logger.exception("installment collection failed", extra={"installment": str(installment.pk)})
                status = "error"
            counts[status] = counts.get(status, 0) + 1
        else:
            done += len(rows)
        yield counts


def installments_release(rows: list[Installment]) -> None:
    """Give up this collector's claim of rows it has not charged: their claim time is
    cleared, so the next claim takes them first, as it takes a lapsed claim (the same
    attempt and charge key: nothing was charged for them, and if anything was, the key
    finds it). Only rows still processing under this claim's key are touched, each with
    an `installment.released` row on its order's timeline."""
    if not rows:
        return
    keys = Q()
    for row in rows:
        keys |= Q(pk=row.pk, charge_key=row.charge_key)
    with transaction.atomic():
        mine = set(
            Installment.objects.select_for_update(no_key=True)
            .filter(keys, status=Status.PROCESSING)
            .values_list("pk", flat=True)
        )
        if not mine:
            return
        Installment.objects.filter(pk__in=mine).update(claimed_at=None)
        insert_many(
            [
                timeline_event(
                    row.order,
                    "installment.released",
                    installment=row,
                    from_status=Status.PROCESSING,
                    to_status=Status.PROCESSING,
                    source="collection",
                    data={"charge_key": row.charge_key, "claimed_at": row.claimed_at.isoformat()},
                )
                for row in rows
                if row.pk in mine
            ]
        )
