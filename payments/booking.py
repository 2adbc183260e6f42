"""How payments and charges move money on the ledger (wallets app): the one place that
knows which accounts a payment touches.

    money a provider collected   clearing (merchant, provider) → merchant balance
    split instructions           merchant balance → recipients, one multi-leg transfer
    wallet part of a charge      wallet → merchant balance (a transfer, or a hold capture)
    refund, provider part        merchant balance → clearing (booked back if the provider refuses)
    refund, wallet part          a reversal of the wallet transfer (wallets.transfer_reverse)
    refund, recipients' shares   recipients → merchant balance, pro rata and cumulative:
                                 once refunds total T of an amount A, the recipients have
                                 given back exactly split_returns(T) between them (a full
                                 refund returns every share; none ever gives back more),
                                 tracked per refund so refusals and interleavings self-correct

The merchant's balance is sharded (wallets.ledger): what a payment collects lands on
the shard of its customer, and its split instructions are paid from that same shard in
the same transaction (so they are covered there). A refund takes the money back from the
whole balance (`PaymentAccounts.pool`, drawn from the payment's shard first): its
transaction locks the pool up front (`all(pool=True)`).

Accounts are created by `payment_accounts` before the transaction that books (creating
a shared account inside a transaction that then waits for locks can deadlock with
another creator). Callers hold the payment's row lock and call `accounts_lock` once with
every account the transaction will touch, so they are locked in pk order up front and a
transaction that books several transfers never deadlocks with one that books one.
Lock order everywhere: payment row, charge row, hold or transfer row, accounts by pk.
"""

from dataclasses import dataclass, field

from config import rows
from wallets.ledger import Key, Pool, Posting, balance_key, in_transaction, keys_where, post, shard_name, wallet_key
from wallets.models import Account
from wallets.services import account_get_or_create, transfer_create
from wallets.services import accounts_lock as ledger_accounts_lock

from .splits import splits_allocate


@dataclass
class PaymentAccounts:
    merchant_balance: Account  # the shard of the payment's customer
    clearing: Account | None = None
    # (recipient account, its share of the payment amount), shares > 0 only
    recipients: list[tuple[Account, int]] = field(default_factory=list)
    # The paying customer's wallet, when asked for (payment_accounts' wallet_of); None if it has none.
    wallet: Account | None = None

    @property
    def pool(self) -> Pool:
        """The merchant's whole balance in this currency, this payment's shard first."""
        balance = self.merchant_balance
        return Pool(balance.merchant_id, balance.currency, prefer=balance.name)

    def all(self, *, pool: bool = False) -> list:
        """What to lock: the accounts, and with `pool` the merchant's every shard (a refund)."""
        accounts = [self.merchant_balance, *(account for account, _ in self.recipients)]
        return accounts + ([self.clearing] if self.clearing is not None else []) + ([self.pool] if pool else [])


def payment_accounts(
    *,
    merchant,
    currency: str,
    amount: int,
    split_instructions: list,
    provider: str | None,
    customer_id=None,
    wallet_of=None,
) -> PaymentAccounts:
    """The ledger accounts a payment of `customer_id`'s books to, read in one query and
    created on first use. `provider` None: no provider part (a wallet-only charge).
    `wallet_of`: a customer id whose wallet in `currency` is read in the same query
    (PaymentAccounts.wallet; never created here)."""
    shares = [(d, share) for d, share in splits_allocate(instructions=split_instructions, amount=amount) if share > 0]
    balance = shard_name(customer_id)
    wanted = [(Account.Kind.MERCHANT_BALANCE, balance), *((Account.Kind.RECIPIENT, d) for d, _ in shares)]
    if provider:
        wanted.append((Account.Kind.PROVIDER_CLEARING, provider))
    where = [
        {
            "merchant_id": merchant.pk,
            "customer_id": None,
            "currency": currency,
            "kind": sorted({kind for kind, _ in wanted}),
            "name": sorted({name for _, name in wanted}),
        }
    ]
    if wallet_of is not None:
        where += keys_where([wallet_key(merchant_id=merchant.pk, currency=currency, customer_id=wallet_of)])
    found, wallet = {}, None
    for account in rows.select(Account, where):  # one fixed-shape statement, no ORM compile
        if account.customer_id is None:
            found[account.kind, account.name] = account
        elif account.kind == Account.Kind.CUSTOMER_WALLET:
            wallet = account
    # Missing ones are created in a fixed order: two first-time creators never wait on
    # each other's inserts in a cycle.
    for kind, name in sorted(set(wanted) - set(found)):
        found[kind, name] = account_get_or_create(kind=kind, merchant=merchant, currency=currency, name=name)
    return PaymentAccounts(
        merchant_balance=found[Account.Kind.MERCHANT_BALANCE, balance],
        clearing=found[Account.Kind.PROVIDER_CLEARING, provider] if provider else None,
        recipients=[(found[Account.Kind.RECIPIENT, destination], share) for destination, share in shares],
        wallet=wallet,
    )


def accounts_lock(accounts) -> None:
    """Lock every account (and pool) a transaction will book to, in pk order, in one
    statement, before the first transfer (re-locking them later in the same transaction
    is free). Returns the locked rows (wallets.ledger.Locked)."""
    return ledger_accounts_lock(account_ids=[account for account in accounts if account is not None])


def book_collected(*, accounts: PaymentAccounts, payment, amount: int, reference: str, locked=None) -> None:
    """The provider collected `amount` for the merchant, and each recipient is paid its
    share of the payment out of it: one batch, one ledger write. `locked`: what the
    caller's accounts_lock returned (the accounts are not locked again)."""
    postings = [
        Posting(
            legs=[(accounts.clearing, -amount), (accounts.merchant_balance, amount)],
            currency=payment.currency,
            merchant_id=payment.merchant_id,
            reference=reference,
            description="collected by the provider",
        )
    ]
    if accounts.recipients:
        postings.append(
            _splits(
                balance=accounts.merchant_balance,
                recipients=accounts.recipients,
                currency=payment.currency,
                merchant_id=payment.merchant_id,
                reference=reference,
            )
        )
    with in_transaction():
        post(postings, locked=locked)


def book_provider_refund(*, accounts: PaymentAccounts, payment, amount: int, reference: str, back: bool) -> None:
    """The provider part of a refund leaves the merchant's balance (back=True: the
    provider refused it, so it returns). InsufficientFunds if the merchant paid it out."""
    source, destination = (accounts.clearing, accounts.merchant_balance) if back else (accounts.pool, accounts.clearing)
    transfer_create(
        legs=[(source, -amount), (destination, amount)],
        currency=payment.currency,
        merchant=payment.merchant,
        reference=reference,
        description="refund through the provider refused: booked back" if back else "refund through the provider",
    )


def _splits(*, balance, recipients: list, currency: str, merchant_id, reference: str, needs=None) -> Posting:
    return Posting(
        legs=[(balance, -sum(share for _, share in recipients)), *recipients],
        currency=currency,
        merchant_id=merchant_id,
        reference=reference,
        description="split instructions",
        needs=needs,
    )


def splits_posting(
    *, merchant_id, currency: str, customer_id, amount: int, split_instructions: list, reference: str, needs=None
) -> Posting | None:
    """The posting that pays each recipient its share of a payment of `amount` out of the
    merchant's balance shard of `customer_id` (where the payment landed), in one
    transfer; None without shares. `needs`: the posting that brings the money in, in the
    same batch (skipped with it)."""
    shares = [(d, share) for d, share in splits_allocate(instructions=split_instructions, amount=amount) if share > 0]
    if not shares:
        return None
    return _splits(
        balance=balance_key(merchant_id=merchant_id, currency=currency, owner_id=customer_id),
        recipients=[(Key(Account.Kind.RECIPIENT, merchant_id, currency, name=d), share) for d, share in shares],
        currency=currency,
        merchant_id=merchant_id,
        reference=reference,
        needs=needs,
    )


def split_returns(*, shares: list[int], amount: int, refunded: int) -> list[int]:
    """What each recipient has given back once `refunded` of a payment of `amount` is
    refunded: together floor(sum(shares) × refunded / amount), shared out like the split
    itself (pro rata, floored, the units left one by one to the first). A fully split
    payment's refunds are thus paid entirely by its recipients, whatever the rounding;
    nobody ever gives back more than its share, and a full refund returns every share.
    """
    total = sum(shares)
    if not total:
        return [0] * len(shares)
    back = total * refunded // amount
    parts = [share * back // total for share in shares]
    for k in range(back - sum(parts)):
        parts[k % len(parts)] += 1
    return parts


def splits_rebalance(
    *, accounts: PaymentAccounts, payment, refunded: int, returned: dict[str, int], reference: str
) -> dict[str, int]:
    """Move each recipient to exactly what it owes back once `refunded` is refunded
    (split_returns), from what it has `returned` so far (by destination). Mostly it gives
    back; when a refund was refused it gets back. Self-correcting: exact whatever the
    sequence of refunds, refusals and their interleaving. Returns the moves made
    (destination → amount given back). InsufficientFunds if a recipient has spent it.
    """
    owed = split_returns(shares=[share for _, share in accounts.recipients], amount=payment.amount, refunded=refunded)
    moves = {}
    for (account, _), target in zip(accounts.recipients, owed, strict=True):
        move = target - returned.get(account.name, 0)
        if move:
            moves[account.name] = move
    legs = [(account, -moves[account.name]) for account, _ in accounts.recipients if account.name in moves]
    if not legs:
        return moves
    to_merchant = sum(moves.values())
    if to_merchant:
        legs.append((accounts.merchant_balance if to_merchant > 0 else accounts.pool, to_merchant))
    transfer_create(
        legs=legs,
        currency=payment.currency,
        merchant=payment.merchant,
        reference=reference,
        description="split shares of a refund" if to_merchant > 0 else "split shares of a refused refund: returned",
    )
    return moves
