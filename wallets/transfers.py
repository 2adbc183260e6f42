"""Transfers between any accounts, and their reversals: the engine other apps book with
(payments, credits). They emit nothing: a transfer does not know what a movement means
to a customer; customer money moves through the wallet services (wallets.moves)."""

from collections.abc import Sequence

from django.db import transaction
from django.db.models import Sum

from config.errors import Conflict, InvalidRequest, NotFound
from payments.identity.models import Merchant

from .ledger import BALANCE, Pool, Posted, Posting, in_transaction, post, shard_names
from .models import Account, Entry, Transfer

Leg = tuple[Account, int]


def transfer_create(
    *,
    legs: Sequence[Leg],
    currency: str,
    kind: str = Transfer.Kind.TRANSFER,
    merchant: Merchant | None = None,
    reference: str = "",
    description: str = "",
    idempotency_key: str | None = None,
    created_by=None,
) -> Transfer:
    """Move value between accounts: `legs` are (account, signed amount), summing to 0,
    all in `currency`. A simple transfer is [(source, -amount), (destination, amount)];
    a split is one negative leg and several positive ones. An account may also be named
    by its id or by wallets.ledger.Key, and a debit of a merchant's balance by wallets.ledger.Pool.

    Locks every account involved in pk order (wallets.ledger), so concurrent transfers
    never lose an update nor deadlock. The passed Account objects get their new balances.
    Idempotent on (merchant, idempotency_key): a retry returns the first transfer and
    moves nothing (the same key with different legs raises Conflict).
    Raises InvalidRequest (unbalanced, zero or mixed-currency legs), InsufficientFunds
    (a no-overdraft account would drop below its available balance; nothing changes).
    """
    return transfer_post(
        Posting(
            legs=legs,
            currency=currency,
            kind=kind,
            merchant_id=merchant.pk if merchant is not None else None,
            reference=reference,
            description=description,
            idempotency_key=idempotency_key,
            created_by_id=created_by.pk if created_by is not None else None,
        )
    ).transfer


def transfer_post(posting: Posting) -> Posted:
    """One posting, a batch of one, in its own transaction or the caller's."""
    with in_transaction():
        return post([posting])[0]


def _split_in_proportion(total: int, weights: list[int]) -> list[int]:
    """`total` split in proportion to `weights`, exactly: the floors, then the remainder
    one unit each to the first parts."""
    whole = sum(weights)
    parts = [total * weight // whole for weight in weights]
    for i in range(total - sum(parts)):
        parts[i] += 1
    return parts


def _reversal_legs(
    *, legs: Sequence[tuple[object, int]], already: dict, reversed_total: int, amount: int
) -> list[tuple[object, int]]:
    """The legs of a reversal of `amount` more of a transfer whose `legs` are
    [(account id, signed amount), ...] in entry order, of which `reversed_total` has been
    reversed already, `already` mapping account id -> the signed sum of those reversals'
    legs on it.

    Each side (the negative legs; the positive legs: each side adds up to the transfer's
    amount) is reversed in proportion, on the running total: after this reversal the legs
    should have been reversed by the exact split of `reversed_total + amount` over the
    side (remainder to the first legs); this reversal takes that target minus what each
    leg has had, clamped between 0 and what is left of the leg, and any unit the clamp
    moved is put back on (or taken from) the first legs that can take (give) it. Hence
    each side sums to `amount` (the reversal balances), no leg is ever reversed beyond
    itself, and the reversal that takes the last of the transfer takes exactly what is
    left of each leg: several partial reversals end at the full negation. Deterministic.
    A two-leg transfer is reversed by exactly `amount` on each leg.
    """
    total_after = reversed_total + amount
    out = {}
    for side in ([leg for leg in legs if leg[1] < 0], [leg for leg in legs if leg[1] > 0]):
        size = [abs(leg) for _, leg in side]
        done = [abs(already.get(account_id, 0)) for account_id, _ in side]
        room = [s - d for s, d in zip(size, done, strict=True)]
        target = _split_in_proportion(total_after, size)
        parts = [min(max(t - d, 0), r) for t, d, r in zip(target, done, room, strict=True)]
        missing = amount - sum(parts)
        for i in range(len(parts)):  # the clamp's units back on, or off, the first legs that can
            if missing > 0:
                step = min(missing, room[i] - parts[i])
            else:
                step = -min(-missing, parts[i])
            parts[i] += step
            missing -= step
        if missing:
            raise InvalidRequest(f"Only {sum(room)} of the transfer is left to reverse.", param="amount")
        for (account_id, leg), part in zip(side, parts, strict=True):
            if part:
                out[account_id] = part if leg < 0 else -part
    return [(account_id, out[account_id]) for account_id, _ in legs if account_id in out]


@transaction.atomic
def transfer_reverse(
    *,
    transfer: Transfer,
    amount: int | None = None,
    reference: str = "",
    description: str = "",
    created_by=None,
) -> Transfer:
    """Write the opposite transfer, referencing the original: in full (`amount=None`:
    whatever has not been reversed yet) or partly, a split too (see _reversal_legs: each
    leg in proportion, in whole minor units, the reversals of a leg never beyond it, the
    last one ending exactly at the full negation). Money going back out of a merchant's
    balance is taken from the whole balance (its shard first: wallets.ledger.Pool).

    Locks the original transfer row, then its accounts in pk order; reversals of one
    transfer never add up to more than it moved, so a full reversal happens at most once.
    Emits wallet.credited / wallet.debited for each customer wallet it moves money on.
    Raises Conflict (nothing left to reverse), InvalidRequest (a reversal of a reversal,
    an amount above what remains), InsufficientFunds (the money has left the account it
    must come back from).
    """
    from .moves import wallet_events_emit

    original = Transfer.objects.select_for_update(no_key=True).filter(pk=transfer.pk).first()
    if original is None:
        raise NotFound(f"No such transfer: {transfer.pk}.")
    if original.reverses_id is not None:
        raise InvalidRequest("A reversal cannot itself be reversed; make a new transfer.")
    reversed_so_far = original.reversals.aggregate(total=Sum("amount"))["total"] or 0
    remaining = original.amount - reversed_so_far
    if remaining <= 0:
        raise Conflict(f"Transfer {original.pk} is already fully reversed.")
    if amount is None:
        amount = remaining
    if isinstance(amount, bool) or not isinstance(amount, int) or amount <= 0:
        raise InvalidRequest("The amount must be a positive integer in minor units.", param="amount")
    if amount > remaining:
        raise InvalidRequest(f"Only {remaining} of transfer {original.pk} is left to reverse.", param="amount")
    already = dict(
        Entry.objects.filter(transfer__reverses=original)
        .order_by()
        .values("account_id")
        .annotate(total=Sum("amount"))
        .values_list("account_id", "total")
    )
    legs = _reversal_legs(
        legs=list(original.entries.order_by("id").values_list("account_id", "amount")),
        already=already,
        reversed_total=reversed_so_far,
        amount=amount,
    )
    balances = {
        a.pk: a
        for a in Account.objects.filter(
            pk__in=[pk for pk, leg in legs if leg < 0], kind=BALANCE, customer__isnull=True, name__in=shard_names()
        )
    }
    legs = [
        (Pool(balances[pk].merchant_id, balances[pk].currency, prefer=balances[pk].name), leg)
        if pk in balances
        else (pk, leg)
        for pk, leg in legs
    ]
    posted = transfer_post(
        Posting(
            legs=legs,
            currency=original.currency,
            kind=Transfer.Kind.REVERSAL,
            merchant_id=original.merchant_id,
            reference=reference or original.reference,
            description=description,
            reverses_id=original.pk,
            created_by_id=created_by.pk if created_by is not None else None,
        )
    )
    wallet_events_emit([posted], reverses=str(original.pk))
    return posted.transfer
