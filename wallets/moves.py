"""Customer money in and out of wallets: credits, debits (one, or many set-based: one
core, a single move is a batch of one), staff adjustments, and the wallet events.

Events. Every change these services post to a customer wallet's balance emits one
`wallet.credited` or `wallet.debited` per wallet (amount positive, with the balance and
available after it), in the transaction that posts it, and only when it posts (an
idempotent replay emits nothing): wallet_credit, wallet_debit(s), wallet_adjust,
hold_capture (debited: the captured amount leaves the wallet; credited: it lands in a
customer wallet as its destination) and transfer_reverse (credited where money returns
to a wallet, debited where a reversal takes it back). Holds created, voided or expired
change `available`, not the balance, and emit nothing.
"""

from collections.abc import Sequence
from dataclasses import dataclass

from django.db import transaction

from config.currencies import MAX_AMOUNT
from config.errors import InvalidRequest
from payments.identity.models import Merchant

from .ledger import Key, Locked, Posted, Posting, balance_key, in_transaction, lock, post, wallet_key
from .models import Account, Transfer


def check_amount(amount) -> None:
    if isinstance(amount, bool) or not isinstance(amount, int) or amount <= 0:
        raise InvalidRequest("The amount must be a positive integer in minor units.", param="amount")
    if amount > MAX_AMOUNT:
        raise InvalidRequest(f"The amount must be at most {MAX_AMOUNT}.", param="amount")


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


def wallet_events(results: Sequence[Posted | None], **extra) -> list[tuple]:
    """(merchant id, type, data) of wallet.credited / wallet.debited for every customer
    wallet each posting moved (in leg order), with the wallet as that posting left it;
    nothing for a replay or a skip."""
    events = []
    for posted in results:
        if posted is None or not posted.created or posted.transfer is None:
            continue
        for account_id, amount in posted.legs:
            if posted.accounts[account_id].kind != Account.Kind.CUSTOMER_WALLET:
                continue
            wallet = posted.account_after(account_id)
            type = "wallet.credited" if amount > 0 else "wallet.debited"
            events.append((wallet.merchant_id, type, _wallet_event_data(wallet, posted.transfer, abs(amount), **extra)))
    return events


def events_emit_by_merchant(events: Sequence[tuple]) -> None:
    """Emit (merchant id, type, data) events: one events_emit per merchant, each in order."""
    from webhooks.services import events_emit

    by_merchant: dict = {}
    for merchant_id, type, data in events:
        by_merchant.setdefault(merchant_id, []).append((type, data))
    for merchant_id, merchant_events in by_merchant.items():
        events_emit(merchant=Merchant(pk=merchant_id), events=merchant_events)


def wallet_events_emit(results: Sequence[Posted | None], **extra) -> None:
    events_emit_by_merchant(wallet_events(results, **extra))


def debit_posting(
    *, wallet: Account, amount: int, reference: str = "", reason: str = "", idempotency_key=None, if_covered=False
) -> Posting:
    """The posting of a wallet debit: the wallet to its merchant's balance shard."""
    move = Move(wallet, _balance_shard(wallet), -amount, Transfer.Kind.DEBIT, reference, reason, idempotency_key)
    return move.posting(if_covered=if_covered)


@dataclass
class Move:
    """`amount` into the wallet from `counter` (> 0) or out of it to `counter` (< 0)."""

    wallet: Account
    counter: object  # an Account or a wallets.ledger.Key
    amount: int
    kind: str
    reference: str = ""
    reason: str = ""
    idempotency_key: str | None = None
    created_by_id: object = None

    def posting(self, *, if_covered: bool = False) -> Posting:
        return Posting(
            legs=[(self.counter, -self.amount), (self.wallet, self.amount)],
            currency=self.wallet.currency,
            kind=self.kind,
            merchant_id=self.wallet.merchant_id,
            reference=self.reference,
            description=self.reason,
            idempotency_key=self.idempotency_key,
            created_by_id=self.created_by_id,
            if_covered=if_covered,
        )


def wallet_moves(moves: Sequence[Move], *, if_covered: bool = False, locked: Locked | None = None) -> list:
    """Post the moves as one batch (wallets.ledger.post) and emit their wallet events.
    `if_covered`: a debit the wallet cannot cover is skipped (None), not an error.
    Returns the Posted of each (None: skipped)."""
    with in_transaction():
        results = post([move.posting(if_covered=if_covered) for move in moves], locked=locked)
        wallet_events_emit(results)
    return results


def _funding(wallet: Account) -> Key:
    return Key(Account.Kind.EXTERNAL_FUNDING, wallet.merchant_id, wallet.currency)


def _balance_shard(wallet: Account) -> Key:
    return balance_key(merchant_id=wallet.merchant_id, currency=wallet.currency, owner_id=wallet.customer_id)


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
    check_amount(amount)
    move = Move(wallet, _funding(wallet), amount, Transfer.Kind.CREDIT, reference, reason, idempotency_key)
    return wallet_moves([move])[0].transfer


def wallet_debit(
    *,
    wallet: Account,
    amount: int,
    reference: str = "",
    reason: str = "",
    idempotency_key: str | None = None,
) -> Transfer:
    """Take `amount` (minor units) from the wallet's available balance into the
    merchant's balance (the shard of the wallet's customer), and emit `wallet.debited` in
    the same transaction.

    Locks both accounts in pk order. Idempotent on idempotency_key (per merchant).
    Raises InsufficientFunds when available < amount (nothing changes, no event),
    InvalidRequest (amount not a positive integer up to MAX_AMOUNT), Conflict (the key
    was used for another transfer).
    """
    check_amount(amount)
    move = Move(wallet, _balance_shard(wallet), -amount, Transfer.Kind.DEBIT, reference, reason, idempotency_key)
    return wallet_moves([move])[0].transfer


def wallet_debits_many(*, debits: Sequence[tuple[Account, int, str]], reason: str = "") -> list[Transfer | None]:
    """wallet_debit for many (wallet, amount, reference) at once, in one batch: the debits
    are checked in the order given (several may take from one wallet); one the wallet
    cannot cover (available < amount) is skipped and its slot is None. All in one
    currency and merchant. No idempotency keys: the caller's own rows (charges) carry
    them. Used by set-based jobs such as installment collection."""
    if not debits:
        return []
    first = debits[0][0]
    owner = (first.merchant_id, first.currency, Account.Kind.CUSTOMER_WALLET)
    if any((w.merchant_id, w.currency, w.kind) != owner for w, _, _ in debits):
        raise InvalidRequest("wallet_debits_many takes customer wallets of one merchant and one currency.")
    for _, amount, _ in debits:
        check_amount(amount)
    moves = [
        Move(wallet, _balance_shard(wallet), -amount, Transfer.Kind.DEBIT, reference, reason)
        for wallet, amount, reference in debits
    ]
    return [posted.transfer if posted else None for posted in wallet_moves(moves, if_covered=True)]


def wallet_debits_lock(*, debits) -> Locked:
    """Lock, in one statement and pk order, every customer wallet and merchant balance
    shard that debits of these (merchant id, currency, customer id) will touch. A
    transaction making several batches (one per merchant and currency) takes all its
    ledger locks up front, so it cannot deadlock with another doing the same in another
    order. Call it inside that transaction."""
    refs = []
    for merchant_id, currency, customer_id in debits:
        refs.append(wallet_key(merchant_id=merchant_id, currency=currency, customer_id=customer_id))
        refs.append(balance_key(merchant_id=merchant_id, currency=currency, owner_id=customer_id))
    return lock(refs)


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
    move = Move(
        wallet,
        _funding(wallet),
        amount,
        Transfer.Kind.ADJUSTMENT,
        "staff-adjustment",
        reason.strip(),
        idempotency_key,
        staff_user.pk if staff_user is not None else None,
    )
    return wallet_moves([move])[0].transfer
