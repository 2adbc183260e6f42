"""Two-phase holds: reserve part of an account's available balance (`held` rises, the
balance does not), then capture it (posted, possibly for less) or void it; expired ones
are released by a periodic task. Every change of `held` is a posting of the ledger core.

Lock order: the Hold row first, then accounts by pk (wallets.ledger)."""

from collections.abc import Sequence
from datetime import datetime
from functools import partial

from django.db import transaction
from django.utils import timezone

from config.errors import Conflict, IllegalTransition, InvalidRequest, NotFound
from payments.identity.models import Merchant

from .accounts import merchant_balance_account
from .ledger import Posting, lock, post
from .models import Account, Hold, Transfer
from .moves import check_amount, wallet_events_emit

Leg = tuple[Account, int]


@transaction.atomic
def hold_create(
    *,
    account: Account,
    amount: int,
    expires_at: datetime | None = None,
    reference: str = "",
    destination: Account | None = None,
    idempotency_key: str | None = None,
    owner: str = "",
) -> Hold:
    """Reserve `amount` of the account's available balance: `held` rises, `balance` does
    not. `destination` is where a capture posts (default: the merchant's balance, the
    shard of the account's customer).
    An `owner` (e.g. "charge:<id>") makes the hold that workflow's: capture and void then
    take the same owner, so nobody else (the holds API, staff) settles it under it.

    Locks the account. Idempotent on (account, idempotency_key): a retry returns the first
    hold (whatever became of it since, even past its expiry) and reserves nothing more.
    Raises InsufficientFunds (available < amount; nothing changes), InvalidRequest,
    Conflict (the key was used for a hold with another amount, expiry or destination).
    """
    check_amount(amount)
    if destination is None:
        destination = merchant_balance_account(
            merchant=Merchant(pk=account.merchant_id), currency=account.currency, customer_id=account.customer_id
        )
    if destination.currency != account.currency or destination.pk == account.pk:
        raise InvalidRequest("A hold's destination must be another account in the same currency.")
    replay = partial(
        _existing_hold,
        account=account,
        idempotency_key=idempotency_key,
        amount=amount,
        expires_at=expires_at,
        destination=destination,
    )
    if idempotency_key is not None and (existing := replay()) is not None:
        return existing
    if expires_at is not None and expires_at <= timezone.now():
        raise InvalidRequest("expires_at must be in the future.", param="expires_at")
    locked = lock([account.pk])
    # A concurrent retry with the same key committed while we waited for the lock.
    if idempotency_key is not None and (existing := replay()) is not None:
        return existing
    [posted] = post([Posting(currency=account.currency, held={account.pk: amount})], locked=locked)
    hold = Hold.objects.create(
        account_id=account.pk,
        destination=destination,
        amount=amount,
        expires_at=expires_at,
        reference=reference,
        idempotency_key=idempotency_key,
        owner=owner,
    )
    account.balance, account.held = posted.after[account.pk]
    return hold


def _existing_hold(*, account: Account, idempotency_key: str, amount: int, expires_at, destination) -> Hold | None:
    hold = Hold.objects.filter(account=account, idempotency_key=idempotency_key).first()
    if hold is None:
        return None
    if (hold.amount, hold.expires_at, hold.destination_id) != (amount, expires_at, destination.pk):
        raise Conflict(f"Idempotency key {idempotency_key!r} was already used for a different hold.")
    return hold


def _lock_pending_hold(hold: Hold, *, action: str, owner: str = "") -> Hold:
    locked = (
        Hold.objects.select_for_update(no_key=True, of=("self",)).select_related("account").filter(pk=hold.pk).first()
    )
    if locked is None:
        raise NotFound(f"No such hold: {hold.pk}.")
    if locked.owner != owner:
        raise IllegalTransition(f"Hold {hold.pk} belongs to {locked.owner} and settles with it; it cannot be {action}.")
    if locked.status != Hold.Status.PENDING:
        raise IllegalTransition(f"Hold {hold.pk} is {locked.status}; only a pending hold can be {action}.")
    return locked


@transaction.atomic
def hold_capture(
    *,
    hold: Hold,
    amount: int | None = None,
    splits: Sequence[Leg] | None = None,
    reference: str = "",
    owner: str = "",
) -> Hold:
    """Post `amount` (default: all) of a pending hold and release the rest. The money goes
    to the hold's destination, or is split over `splits` [(account, amount), ...] whose
    amounts sum to the captured amount.

    Locks the hold, then the accounts in pk order. Not idempotent by itself: a second
    capture raises IllegalTransition (409), as does capturing an expired hold.
    Emits wallet.debited (the captured amount) when the hold is on a customer wallet, and
    wallet.credited for each customer wallet it posts to (an auction's seller).
    Raises InvalidRequest (amount above the hold, bad splits), IllegalTransition (409) when
    the hold belongs to another owner than `owner`.
    """
    locked_hold = _lock_pending_hold(hold, action="captured", owner=owner)
    if locked_hold.expires_at is not None and locked_hold.expires_at <= timezone.now():
        raise IllegalTransition(f"Hold {hold.pk} expired at {locked_hold.expires_at.isoformat()}.")
    if amount is None:
        amount = locked_hold.amount
    check_amount(amount)
    if amount > locked_hold.amount:
        raise InvalidRequest(f"Cannot capture {amount}: the hold is for {locked_hold.amount}.", param="amount")
    account = locked_hold.account
    if splits is None:
        credit_legs = [(locked_hold.destination_id, amount)]
    else:
        credit_legs = [(a.pk, part) for a, part in splits]
    [posted] = post(
        [
            Posting(
                legs=[(account.pk, -amount), *credit_legs],
                currency=account.currency,
                kind=Transfer.Kind.HOLD_CAPTURE,
                merchant_id=account.merchant_id,
                reference=reference or locked_hold.reference,
                held={account.pk: -locked_hold.amount},
            )
        ]
    )
    locked_hold.status = Hold.Status.CAPTURED
    locked_hold.captured_amount = amount
    locked_hold.capture_transfer = posted.transfer
    locked_hold.resolved_at = timezone.now()
    locked_hold.save(update_fields=["status", "captured_amount", "capture_transfer", "resolved_at"])
    wallet_events_emit([posted], hold=str(locked_hold.pk))
    return locked_hold


def _release(locked_hold: Hold, status: str) -> Hold:
    post([Posting(currency=locked_hold.account.currency, held={locked_hold.account_id: -locked_hold.amount})])
    locked_hold.status = status
    locked_hold.resolved_at = timezone.now()
    locked_hold.save(update_fields=["status", "resolved_at"])
    return locked_hold


@transaction.atomic
def hold_void(*, hold: Hold, owner: str = "") -> Hold:
    """Release a pending hold: `held` drops by its amount, nothing is posted.

    Locks the hold, then its account. Raises IllegalTransition (409) unless pending, or
    when the hold belongs to another owner than `owner`.
    """
    return _release(_lock_pending_hold(hold, action="voided", owner=owner), Hold.Status.VOIDED)


def holds_expire(*, now: datetime | None = None, batch: int = 500) -> int:
    """Release every pending hold whose expires_at has passed (status `expired`), one
    short transaction per hold; holds locked by a concurrent capture are skipped (the
    next run sees them if they are still pending). Safe to run twice. Returns how many."""
    now = now or timezone.now()
    expired = 0
    while True:
        ids = list(
            Hold.objects.filter(status=Hold.Status.PENDING, expires_at__lte=now)
            .order_by("expires_at")
            .values_list("pk", flat=True)[:batch]
        )
        done_this_round = 0
        for hold_id in ids:
            with transaction.atomic():
                hold = (
                    Hold.objects.select_for_update(no_key=True, skip_locked=True, of=("self",))
                    .select_related("account")
                    .filter(pk=hold_id, status=Hold.Status.PENDING)
                    .first()
                )
                if hold is None:
                    continue
                _release(hold, Hold.Status.EXPIRED)
                done_this_round += 1
        expired += done_this_round
        if len(ids) < batch or done_this_round == 0:
            return expired
