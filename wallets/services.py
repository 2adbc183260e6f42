"""Writes to the ledger. Every money movement goes through `transfer_create` (or its
locked core `_post`): lock the accounts in pk order, check, write entries, update the
cached balances, all in one transaction.

Lock order, everywhere: a Transfer row (reversal) or a Hold row first, then accounts by
pk. Nothing locks an account and then a hold or a transfer, so no two writers deadlock.

Events. Every change these services post to a customer wallet's balance emits one
`wallet.credited` or `wallet.debited` per wallet (amount positive, with the balance and
available after it), in the transaction that posts it, and only when it posts (an
idempotent replay emits nothing): wallet_credit, wallet_debit, wallet_adjust,
hold_capture (debited: the captured amount leaves the wallet; credited: it lands in a
customer wallet as its destination) and transfer_reverse
(credited where money returns to a wallet, debited where a reversal takes it back).
Holds created, voided or expired change `available`, not the balance, and emit nothing.
transfer_create, the engine other apps book with, emits nothing: it does not know what
a movement means to a customer; customer money moves through the wallet services.
"""

import logging
import time
import uuid
from collections.abc import Sequence
from datetime import datetime
from functools import partial

from django.db import IntegrityError, connection, transaction
from django.db.models import Q, Sum
from django.utils import timezone

from config.currencies import MAX_AMOUNT
from config.errors import Conflict, IllegalTransition, InsufficientFunds, InvalidRequest, NotFound
from payments.identity.models import Customer, Merchant

from .models import Account, Entry, Hold, LedgerAudit, Transfer

logger = logging.getLogger("paydesk.wallets")

Leg = tuple[Account, int]


# --- Accounts --------------------------------------------------------------------------


def _account_get_or_create(*, kind: str, currency: str, merchant_id, customer_id, name: str, **defaults):
    lookup = {"kind": kind, "currency": currency, "merchant_id": merchant_id, "customer_id": customer_id, "name": name}
    account = Account.objects.filter(**lookup).first()
    if account is not None:
        return account
    try:
        with transaction.atomic():
            return Account.objects.create(**lookup, **defaults)
    except IntegrityError:  # created concurrently: the unique constraint picked one
        return Account.objects.get(**lookup)


def account_get_or_create(
    *,
    kind: str,
    currency: str,
    merchant: Merchant | None = None,
    customer: Customer | None = None,
    name: str = "",
) -> Account:
    """The one account of this kind for this owner and currency, created on first use.

    External funding and provider clearing accounts (where money enters and leaves the
    system: a card payment collected by a provider is a receivable) may go negative;
    every other kind may not. Safe under concurrency (unique constraint).
    """
    return _account_get_or_create(
        kind=kind,
        currency=currency,
        merchant_id=merchant.pk if merchant is not None else None,
        customer_id=customer.pk if customer is not None else None,
        name=name,
        allow_negative=kind in (Account.Kind.EXTERNAL_FUNDING, Account.Kind.PROVIDER_CLEARING),
    )


def merchant_funding_account(*, merchant: Merchant, currency: str) -> Account:
    return account_get_or_create(kind=Account.Kind.EXTERNAL_FUNDING, merchant=merchant, currency=currency)


def merchant_balance_account(*, merchant: Merchant, currency: str) -> Account:
    return account_get_or_create(kind=Account.Kind.MERCHANT_BALANCE, merchant=merchant, currency=currency)


def wallet_create(*, customer: Customer, currency: str) -> Account:
    """Open the customer's wallet in `currency` (lowercase ISO code).

    Also opens the merchant's funding and balance accounts in that currency if needed,
    here rather than on the first credit or debit: creating a shared account inside a
    transaction that then waits for a wallet lock could deadlock with a writer that holds
    the wallet lock and waits on the uncommitted insert.
    Raises Conflict if the customer already has a wallet in that currency (the unique
    constraint decides between concurrent creates).
    """
    currency = currency.lower()
    merchant = Merchant(pk=customer.merchant_id)
    merchant_funding_account(merchant=merchant, currency=currency)
    merchant_balance_account(merchant=merchant, currency=currency)
    try:
        with transaction.atomic():
            return Account.objects.create(
                kind=Account.Kind.CUSTOMER_WALLET,
                merchant_id=customer.merchant_id,
                customer=customer,
                currency=currency,
            )
    except IntegrityError:
        raise Conflict(f"Customer {customer.pk} already has a {currency} wallet.", param="currency")


# --- Transfers -------------------------------------------------------------------------


def _check_legs(legs: Sequence[Leg], currency: str) -> None:
    if len(legs) < 2:
        raise InvalidRequest("A transfer needs at least two legs.")
    seen = set()
    for account, amount in legs:
        if isinstance(amount, bool) or not isinstance(amount, int) or amount == 0:
            raise InvalidRequest("Each leg amount must be a non-zero integer in minor units.", param="amount")
        if account.currency != currency:
            raise InvalidRequest(
                f"Account {account.pk} is in {account.currency}, the transfer in {currency}.", param="currency"
            )
        if account.pk in seen:
            raise InvalidRequest(f"Account {account.pk} appears twice in one transfer.")
        seen.add(account.pk)
    if sum(amount for _, amount in legs) != 0:
        raise InvalidRequest("The legs of a transfer must sum to zero.", param="amount")


def _lock_accounts(account_ids) -> dict:
    """Lock the accounts in pk order (the fixed order that rules out deadlock).

    FOR NO KEY UPDATE, not FOR UPDATE: it excludes every other writer just the same, but
    not the KEY SHARE lock a foreign-key check takes (a hold or entry inserted elsewhere
    referencing one of these accounts); with FOR UPDATE, such an insert made while its
    own transaction holds another account's lock closes a deadlock cycle.
    """
    locked = Account.objects.select_for_update(no_key=True).filter(pk__in=set(account_ids)).order_by("pk")
    return {account.pk: account for account in locked}


def accounts_lock(*, account_ids) -> None:
    """Lock every account a transaction is about to post to or release holds on, in pk
    order, before its first ledger write: a transaction that settles several holds or
    transfers takes all its account locks up front, so it cannot deadlock with one that
    takes some of them (re-locking them later in the same transaction is free). Lock any
    Hold or Transfer rows first (the lock order above). Call it inside that transaction."""
    _lock_accounts(account_ids)


def _existing_transfer(*, merchant_id, idempotency_key: str, legs: Sequence[Leg] | None) -> Transfer | None:
    transfer = Transfer.objects.filter(merchant_id=merchant_id, idempotency_key=idempotency_key).first()
    if transfer is not None and legs is not None:
        first = sorted((e.account_id, e.amount) for e in transfer.entries.all())
        if first != sorted((a.pk, amount) for a, amount in legs):
            raise Conflict(f"Idempotency key {idempotency_key!r} was already used for a different transfer.")
    return transfer


def _post(
    *,
    locked: dict,
    legs: Sequence[tuple[object, int]],
    currency: str,
    kind: str,
    merchant_id=None,
    reference: str = "",
    description: str = "",
    idempotency_key: str | None = None,
    reverses: Transfer | None = None,
    created_by=None,
    release: dict | None = None,
) -> Transfer:
    """The core, called with the accounts already locked: check, write, update balances.

    `legs` are (account id, signed amount). `release` maps account id -> amount of `held`
    to release first (a hold capture). Raises InsufficientFunds naming the first account
    that would end below its available balance; nothing is written then.
    """
    release = release or {}
    now = timezone.now()
    new_state = {}
    for account_id, amount in legs:
        account = locked[account_id]
        held = account.held - release.get(account_id, 0)
        balance = account.balance + amount
        if not account.allow_negative and amount < 0 and balance - held < 0:
            raise InsufficientFunds(
                f"Account {account_id} has {account.balance - account.held} available, {-amount} needed.",
                param="amount",
            )
        new_state[account_id] = (balance, held)
    transfer = Transfer.objects.create(
        merchant_id=merchant_id,
        currency=currency,
        amount=sum(amount for _, amount in legs if amount > 0),
        kind=kind,
        reference=reference,
        description=description,
        idempotency_key=idempotency_key,
        reverses=reverses,
        created_by=created_by,
        created_at=now,
    )
    Entry.objects.bulk_create(
        Entry(transfer=transfer, account_id=account_id, amount=amount, balance_after=new_state[account_id][0])
        for account_id, amount in legs
    )
    # Computed values are safe: we hold the row locks, so nobody changed them since the read.
    _write_balances(new_state)
    for account_id, (balance, held) in new_state.items():
        locked[account_id].balance, locked[account_id].held = balance, held
    return transfer


def _write_balances(new_state: dict) -> None:
    """Set (balance, held) of each locked account. On PostgreSQL one UPDATE ... FROM
    (VALUES ...) for all legs: one round trip instead of one per account, on the hottest
    path of the ledger."""
    if connection.vendor != "postgresql":
        for account_id, (balance, held) in new_state.items():
            Account.objects.filter(pk=account_id).update(balance=balance, held=held)
        return
    rows = ", ".join(["(%s::uuid, %s::bigint, %s::bigint)"] * len(new_state))
    params = [value for account_id, (balance, held) in new_state.items() for value in (account_id, balance, held)]
    with connection.cursor() as cursor:
        cursor.execute(
            f"UPDATE {Account._meta.db_table} AS a SET balance = v.balance, held = v.held "
            f"FROM (VALUES {rows}) AS v(id, balance, held) WHERE a.id = v.id",
            params,
        )


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
    a split is one negative leg and several positive ones.

    Locks every account involved with SELECT ... FOR UPDATE in pk order, so concurrent
    transfers never lose an update nor deadlock. The passed Account objects get their
    new balances.
    Idempotent on (merchant, idempotency_key): a retry returns the first transfer and
    moves nothing (the same key with different legs raises Conflict).
    Raises InvalidRequest (unbalanced, zero or mixed-currency legs), InsufficientFunds
    (a no-overdraft account would drop below its available balance; nothing changes).
    """
    transfer, _ = _transfer_create(
        legs=legs,
        currency=currency,
        kind=kind,
        merchant_id=merchant.pk if merchant is not None else None,
        reference=reference,
        description=description,
        idempotency_key=idempotency_key,
        created_by=created_by,
    )
    return transfer


@transaction.atomic
def _transfer_create(
    *, legs, currency, kind, merchant_id, reference, description, idempotency_key, created_by
) -> tuple[Transfer, bool]:
    """transfer_create, also saying whether this call created the transfer (False: a replay)."""
    _check_legs(legs, currency)
    if idempotency_key is not None:
        existing = _existing_transfer(merchant_id=merchant_id, idempotency_key=idempotency_key, legs=legs)
        if existing is not None:
            return existing, False
    locked = _lock_accounts(account.pk for account, _ in legs)
    if idempotency_key is not None:
        # A concurrent retry with the same key committed while we waited for the locks.
        existing = _existing_transfer(merchant_id=merchant_id, idempotency_key=idempotency_key, legs=legs)
        if existing is not None:
            return existing, False
    post = partial(
        _post,
        locked=locked,
        legs=[(account.pk, amount) for account, amount in legs],
        currency=currency,
        kind=kind,
        merchant_id=merchant_id,
        reference=reference,
        description=description,
        idempotency_key=idempotency_key,
        created_by=created_by,
    )
    if idempotency_key is None:
        transfer = post()
    else:
        try:
            with transaction.atomic():  # a savepoint only when a duplicate key is possible
                transfer = post()
        except IntegrityError:
            existing = _existing_transfer(merchant_id=merchant_id, idempotency_key=idempotency_key, legs=legs)
            if existing is None:
                raise
            return existing, False
    for account, _ in legs:
        account.balance, account.held = locked[account.pk].balance, locked[account.pk].held
    return transfer, True


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
    last one ending exactly at the full negation).

    Locks the original transfer row, then its accounts in pk order; reversals of one
    transfer never add up to more than it moved, so a full reversal happens at most once.
    Emits wallet.credited / wallet.debited for each customer wallet it moves money on.
    Raises Conflict (nothing left to reverse), InvalidRequest (a reversal of a reversal,
    an amount above what remains), InsufficientFunds (the money has left the account it
    must come back from).
    """
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
    locked = _lock_accounts(account_id for account_id, _ in legs)
    reversal = _post(
        locked=locked,
        legs=legs,
        currency=original.currency,
        kind=Transfer.Kind.REVERSAL,
        merchant_id=original.merchant_id,
        reference=reference or original.reference,
        description=description,
        reverses=original,
        created_by=created_by,
    )
    for account_id, leg in legs:
        if locked[account_id].kind == Account.Kind.CUSTOMER_WALLET:
            _emit_wallet_event(wallet=locked[account_id], transfer=reversal, amount=leg, reverses=str(original.pk))
    return reversal


# --- Wallets ---------------------------------------------------------------------------


def _wallet_event_data(wallet: Account, transfer: Transfer, amount: int, **extra) -> dict:
    return {
        "wallet": str(wallet.pk),
        "customer": str(wallet.customer_id),
        "currency": wallet.currency,
        "amount": amount,
        "balance": wallet.balance,
        "available": wallet.available,
        "transfer": str(transfer.pk),
        "reference": transfer.reference,
        **extra,
    }


def _emit(*, merchant_id, type: str, data: dict) -> None:
    from webhooks.services import event_emit

    event_emit(merchant=Merchant(pk=merchant_id), type=type, data=data)


def _wallet_move(
    *,
    wallet: Account,
    counter: Account,
    amount: int,
    kind: str,
    reference: str,
    reason: str,
    idempotency_key: str | None,
    created_by=None,
) -> Transfer:
    """Move `amount` into the wallet from `counter` (amount > 0) or out of it to `counter`
    (amount < 0), and emit wallet.credited / wallet.debited when this call moved it."""
    transfer, created = _transfer_create(
        legs=[(counter, -amount), (wallet, amount)],
        currency=wallet.currency,
        kind=kind,
        merchant_id=wallet.merchant_id,
        reference=reference,
        description=reason,
        idempotency_key=idempotency_key,
        created_by=created_by,
    )
    if created:
        _emit_wallet_event(wallet=wallet, transfer=transfer, amount=amount)
    return transfer


def _emit_wallet_event(*, wallet: Account, transfer: Transfer, amount: int, **extra) -> None:
    """wallet.credited (amount > 0) or wallet.debited (amount < 0, reported positive).
    `wallet` carries the balance and held after the transfer."""
    type = "wallet.credited" if amount > 0 else "wallet.debited"
    _emit(merchant_id=wallet.merchant_id, type=type, data=_wallet_event_data(wallet, transfer, abs(amount), **extra))


@transaction.atomic
def wallet_credit(
    *,
    wallet: Account,
    amount: int,
    reference: str = "",
    reason: str = "",
    idempotency_key: str | None = None,
) -> Transfer:
    """Add `amount` (minor units) to the wallet, funded from the merchant's external
    funding account in that currency, and emit `wallet.credited` in the same transaction.

    Locks both accounts in pk order. Idempotent on idempotency_key (per merchant): a
    retry returns the first transfer, moves nothing and emits nothing.
    Raises InvalidRequest (amount not a positive integer up to MAX_AMOUNT), Conflict (the
    key was used for another transfer).
    """
    _check_amount(amount)
    funding = merchant_funding_account(merchant=Merchant(pk=wallet.merchant_id), currency=wallet.currency)
    return _wallet_move(
        wallet=wallet,
        counter=funding,
        amount=amount,
        kind=Transfer.Kind.CREDIT,
        reference=reference,
        reason=reason,
        idempotency_key=idempotency_key,
    )


@transaction.atomic
def wallet_debit(
    *,
    wallet: Account,
    amount: int,
    reference: str = "",
    reason: str = "",
    idempotency_key: str | None = None,
) -> Transfer:
    """Take `amount` (minor units) from the wallet's available balance into the
    merchant's balance account, and emit `wallet.debited` in the same transaction.

    Locks both accounts in pk order. Idempotent on idempotency_key (per merchant).
    Raises InsufficientFunds when available < amount (nothing changes, no event),
    InvalidRequest (amount not a positive integer up to MAX_AMOUNT), Conflict (the key
    was used for another transfer).
    """
    _check_amount(amount)
    destination = merchant_balance_account(merchant=Merchant(pk=wallet.merchant_id), currency=wallet.currency)
    return _wallet_move(
        wallet=wallet,
        counter=destination,
        amount=-amount,
        kind=Transfer.Kind.DEBIT,
        reference=reference,
        reason=reason,
        idempotency_key=idempotency_key,
    )


def wallet_debits_lock(*, debits) -> None:
    """Lock, in one statement and pk order, every customer wallet and merchant balance
    account that wallet_debits_many calls for these (merchant id, currency, customer id)
    will touch. A transaction making several such calls (one per merchant and currency)
    takes all its ledger locks up front, so it cannot deadlock with another doing the
    same in another order. Call it inside that transaction."""
    owners: dict[tuple, set] = {}
    for merchant_id, currency, customer_id in debits:
        owners.setdefault((merchant_id, currency), set()).add(customer_id)
    if not owners:
        return
    wanted = Q()
    for (merchant_id, currency), customers in owners.items():
        wanted |= Q(merchant_id=merchant_id, currency=currency) & (
            Q(kind=Account.Kind.CUSTOMER_WALLET, customer_id__in=customers)
            | Q(kind=Account.Kind.MERCHANT_BALANCE, customer__isnull=True, name="")
        )
    list(Account.objects.select_for_update(no_key=True).filter(wanted).order_by("pk").values_list("pk"))


@transaction.atomic
def wallet_debits_many(*, debits: Sequence[tuple[Account, int, str]], reason: str = "") -> list[Transfer | None]:
    """wallet_debit for many (wallet, amount, reference) at once, set-based: one lock of
    every account involved (pk order), the debits checked in the order given (several
    may take from one wallet), then the transfers, their entries, the balances and the
    wallet.debited events written in a few statements, whatever their number.

    All in one currency and merchant. A debit the wallet cannot cover (available <
    amount) is skipped and its slot is None; the others post. No idempotency keys: the
    caller's own rows (charges) carry them. Used by set-based jobs such as installment
    collection; a single debit should use wallet_debit.
    """
    if not debits:
        return []
    wallets = {wallet.pk: wallet for wallet, _, _ in debits}
    first = debits[0][0]
    owner = (first.merchant_id, first.currency, Account.Kind.CUSTOMER_WALLET)
    if any((w.merchant_id, w.currency, w.kind) != owner for w in wallets.values()):
        raise InvalidRequest("wallet_debits_many takes customer wallets of one merchant and one currency.")
    for _, amount, _ in debits:
        _check_amount(amount)
    merchant = Merchant(pk=first.merchant_id)
    destination = merchant_balance_account(merchant=merchant, currency=first.currency)
    locked = _lock_accounts([*wallets, destination.pk])
    state = {pk: [account.balance, account.held] for pk, account in locked.items()}
    now = timezone.now()
    transfers, entries, results, events = [], [], [], []
    for wallet, amount, reference in debits:
        balance, held = state[wallet.pk]
        if balance - held < amount:
            results.append(None)
            continue
        transfer = Transfer(
            id=uuid.uuid4(),
            merchant_id=merchant.pk,
            currency=first.currency,
            amount=amount,
            kind=Transfer.Kind.DEBIT,
            reference=reference,
            description=reason,
            created_at=now,
        )
        state[wallet.pk][0] -= amount
        state[destination.pk][0] += amount
        for account_id, leg in ((wallet.pk, -amount), (destination.pk, amount)):
            after_leg = state[account_id][0]
            entries.append(Entry(transfer=transfer, account_id=account_id, amount=leg, balance_after=after_leg))
        transfers.append(transfer)
        results.append(transfer)
        after = Account(pk=wallet.pk, customer_id=wallet.customer_id, currency=wallet.currency)
        after.balance, after.held = state[wallet.pk]
        events.append(("wallet.debited", _wallet_event_data(after, transfer, amount)))
    if transfers:
        Transfer.objects.bulk_create(transfers)
        Entry.objects.bulk_create(entries)  # in order: entry ids follow each account's running balance
        _write_balances({pk: tuple(state[pk]) for pk in {entry.account_id for entry in entries}})
        from webhooks.services import events_emit

        events_emit(merchant=merchant, events=events)
    for pk, wallet in wallets.items():
        wallet.balance, wallet.held = state[pk]
    return results


def _check_amount(amount) -> None:
    if isinstance(amount, bool) or not isinstance(amount, int) or amount <= 0:
        raise InvalidRequest("The amount must be a positive integer in minor units.", param="amount")
    if amount > MAX_AMOUNT:
        raise InvalidRequest(f"The amount must be at most {MAX_AMOUNT}.", param="amount")


@transaction.atomic
def wallet_adjust(
    *, wallet: Account, amount: int, reason: str, staff_user, idempotency_key: str | None = None
) -> Transfer:
    """A staff correction: credit (amount > 0) or debit (amount < 0) with a mandatory
    reason, recorded on the transfer (kind `adjustment`) with the staff user, and
    announced like any credit or debit (wallet.credited / wallet.debited).

    Both directions book against the merchant's external funding account, where staff
    credits come from: a debit correction returns the money there, so "+X then -X"
    leaves every account as it was (a debit through wallet_debit would have paid the
    merchant instead).
    Locks both accounts in pk order. Idempotent on idempotency_key (per merchant; the
    admin form sends a one-time token, so a double submit adjusts once).
    Raises InvalidRequest (no reason; amount zero, not an integer, or beyond
    ±MAX_AMOUNT), InsufficientFunds (a debit above the available balance; nothing
    changes), Conflict (the key was used for another transfer).
    """
    if not reason or not reason.strip():
        raise InvalidRequest("A reason is required for a balance adjustment.", param="reason")
    if isinstance(amount, bool) or not isinstance(amount, int) or amount == 0:
        raise InvalidRequest("The amount must be a non-zero integer in minor units.", param="amount")
    if abs(amount) > MAX_AMOUNT:
        raise InvalidRequest(f"The amount must be between -{MAX_AMOUNT} and {MAX_AMOUNT}.", param="amount")
    funding = merchant_funding_account(merchant=Merchant(pk=wallet.merchant_id), currency=wallet.currency)
    return _wallet_move(
        wallet=wallet,
        counter=funding,
        amount=amount,
        kind=Transfer.Kind.ADJUSTMENT,
        reference="staff-adjustment",
        reason=reason.strip(),
        idempotency_key=idempotency_key,
        created_by=staff_user,
    )


# --- Holds -----------------------------------------------------------------------------


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
    not. `destination` is where a capture posts (default: the merchant's balance account).
    An `owner` (e.g. "charge:<id>") makes the hold that workflow's: capture and void then
    take the same owner, so nobody else (the holds API, staff) settles it under it.

    Locks the account. Idempotent on (account, idempotency_key): a retry returns the first
    hold (whatever became of it since, even past its expiry) and reserves nothing more.
    Raises InsufficientFunds (available < amount; nothing changes), InvalidRequest,
    Conflict (the key was used for a hold with another amount, expiry or destination).
    """
    _check_amount(amount)
    if destination is None:
        destination = merchant_balance_account(merchant=Merchant(pk=account.merchant_id), currency=account.currency)
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
    locked = Account.objects.select_for_update(no_key=True).get(pk=account.pk)
    # A concurrent retry with the same key committed while we waited for the lock.
    if idempotency_key is not None and (existing := replay()) is not None:
        return existing
    if not locked.allow_negative and locked.balance - locked.held < amount:
        raise InsufficientFunds(
            f"Account {account.pk} has {locked.balance - locked.held} available, {amount} needed.", param="amount"
        )
    hold = Hold.objects.create(
        account=locked,
        destination=destination,
        amount=amount,
        expires_at=expires_at,
        reference=reference,
        idempotency_key=idempotency_key,
        owner=owner,
    )
    locked.held += amount
    Account.objects.filter(pk=locked.pk).update(held=locked.held)
    account.balance, account.held = locked.balance, locked.held
    return hold


def _existing_hold(*, account: Account, idempotency_key: str, amount: int, expires_at, destination) -> Hold | None:
    hold = Hold.objects.filter(account=account, idempotency_key=idempotency_key).first()
    if hold is None:
        return None
    if (hold.amount, hold.expires_at, hold.destination_id) != (amount, expires_at, destination.pk):
        raise Conflict(f"Idempotency key {idempotency_key!r} was already used for a different hold.")
    return hold


def _lock_pending_hold(hold: Hold, *, action: str, owner: str = "") -> Hold:
    locked = Hold.objects.select_for_update(no_key=True).filter(pk=hold.pk).first()
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
    _check_amount(amount)
    if amount > locked_hold.amount:
        raise InvalidRequest(f"Cannot capture {amount}: the hold is for {locked_hold.amount}.", param="amount")
    account_id = locked_hold.account_id
    if splits is None:
        credit_legs = [(locked_hold.destination_id, amount)]
    else:
        credit_legs = [(account.pk, part) for account, part in splits]
        currency = Account.objects.get(pk=account_id).currency
        _check_legs([(Account(pk=account_id, currency=currency), -amount), *splits], currency)
    locked = _lock_accounts([account_id, *(a for a, _ in credit_legs)])
    transfer = _post(
        locked=locked,
        legs=[(account_id, -amount), *credit_legs],
        currency=locked[account_id].currency,
        kind=Transfer.Kind.HOLD_CAPTURE,
        merchant_id=locked[account_id].merchant_id,
        reference=reference or locked_hold.reference,
        release={account_id: locked_hold.amount},
    )
    locked_hold.status = Hold.Status.CAPTURED
    locked_hold.captured_amount = amount
    locked_hold.capture_transfer = transfer
    locked_hold.resolved_at = timezone.now()
    locked_hold.save(update_fields=["status", "captured_amount", "capture_transfer", "resolved_at"])
    for wallet_id, leg in [(account_id, -amount), *credit_legs]:
        if locked[wallet_id].kind == Account.Kind.CUSTOMER_WALLET:
            _emit_wallet_event(wallet=locked[wallet_id], transfer=transfer, amount=leg, hold=str(locked_hold.pk))
    return locked_hold


def _release(locked_hold: Hold, status: str) -> Hold:
    account = Account.objects.select_for_update(no_key=True).get(pk=locked_hold.account_id)
    Account.objects.filter(pk=account.pk).update(held=account.held - locked_hold.amount)
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
                    Hold.objects.select_for_update(no_key=True, skip_locked=True)
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


# --- Audit -----------------------------------------------------------------------------


def ledger_audit_run(*, trigger: str) -> LedgerAudit:
    """Run the ledger audit (selectors.ledger_audit), record the result, and log an error
    when it fails so staff are alerted (the admin also shows failing audits). Never repairs."""
    from .selectors import ledger_audit

    started_at = timezone.now()
    start = time.perf_counter()
    report = ledger_audit()
    audit = LedgerAudit.objects.create(
        ok=report["ok"],
        trigger=trigger,
        report=report,
        started_at=started_at,
        duration_ms=int((time.perf_counter() - start) * 1000),
    )
    if not report["ok"]:
        logger.error(
            "ledger audit FAILED",
            extra={"audit": audit.pk, "violations": sum(len(v) for v in report["violations"].values())},
        )
    return audit
