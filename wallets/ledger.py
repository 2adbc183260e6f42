"""The ledger core: `post` writes a batch of postings (transfers, holds' reservations and
releases) set-based, and every money movement in Paydesk goes through it. A single
transfer is a batch of one.

    post(postings)  1. lock every account of the batch, in id order, in one statement
                    2. check each posting in order on the locked balances (no overdraft
                       below what is available; several postings may touch one account)
                    3. one statement (PostgreSQL) inserts the transfers and their entries
                       and sets the cached balances, unless one of the batch's idempotency
                       keys is already used: then it writes nothing and says which
                    4. only then, for those keys: read the first transfers (a replay)

So a batch costs two round trips whatever its size, three when a key was a replay. The
key check runs in the writing statement, after the locks are held: a concurrent retry of
the same transfer locks the same accounts, so it has committed by then and is seen.
Elsewhere (SQLite, the embedded default) the same steps run as a few ORM statements.
The database's constraints and triggers (no negative balance, append-only entries,
balanced transfers at commit) stay the final guard.

Accounts are named in legs by row (an Account), by id, by owner (`Key`), or, for a debit
of a merchant's balance, by `Pool`: its shards, drawn from the preferred shard first.

Merchant balances are sharded (MERCHANT_BALANCE_SHARDS accounts per merchant and
currency, a customer's money always landing on the shard of its id), so one merchant's
debits from many wallets do not all queue on one row; a merchant's balance is the sum of
its shards (merchant_balance). A debit of the balance (a refund, a payout) that one shard
cannot cover locks the whole pool; whoever locks a pool locks it with everything else, in
id order, in one statement, so the lock order rule is kept.
"""

import uuid
from collections.abc import Iterable, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import cached_property

from django.conf import settings
from django.db import IntegrityError, connection, transaction
from django.db.models import Q
from django.utils import timezone

from config import rows
from config.errors import Conflict, InsufficientFunds, InvalidRequest
from config.rows import row_source

from .models import Account, Entry, Transfer

BALANCE = Account.Kind.MERCHANT_BALANCE


@contextmanager
def in_transaction():
    """The caller's transaction if there is one, else a new one; never a savepoint: post
    raises its errors (InsufficientFunds, Conflict, InvalidRequest) before it writes, so
    a caller that catches one may go on in its transaction, and the hot path saves the
    savepoint's two statements. One exception: a Conflict from a key whose first use
    moved other accounts is the database's unique violation, and the transaction is then
    aborted (its caller can only roll back, as for any database error)."""
    if connection.in_atomic_block:
        yield
    else:
        with transaction.atomic():
            yield


@dataclass(frozen=True)
class Key:
    """An account named by its owner (the unique constraint's columns), not by id."""

    kind: str
    merchant_id: object
    currency: str
    customer_id: object = None
    name: str = ""


@dataclass(frozen=True)
class Pool:
    """A merchant's balance in a currency, all its shards: a debit draws on the `prefer`
    shard first, then the others in id order. Only for negative legs."""

    merchant_id: object
    currency: str
    prefer: str = ""


def shard_name(owner_id) -> str:
    """The merchant-balance shard of a customer (or any owner id), for good: shard 0 is
    the unsharded account of old (name ""), the others "shard.NN"."""
    shards = settings.MERCHANT_BALANCE_SHARDS
    n = uuid.UUID(str(owner_id)).int % shards if owner_id is not None and shards > 1 else 0
    return f"shard.{n:02d}" if n else ""


def shard_names() -> list[str]:
    return [""] + [f"shard.{n:02d}" for n in range(1, settings.MERCHANT_BALANCE_SHARDS)]


def balance_key(*, merchant_id, currency: str, owner_id=None) -> Key:
    """The merchant-balance shard that money from `owner_id` (a customer) lands on."""
    return Key(kind=BALANCE, merchant_id=merchant_id, currency=currency, name=shard_name(owner_id))


def wallet_key(*, merchant_id, currency: str, customer_id) -> Key:
    """A customer's wallet in `currency`: its merchant's customer_wallet account for it."""
    return Key(kind=Account.Kind.CUSTOMER_WALLET, merchant_id=merchant_id, currency=currency, customer_id=customer_id)


@dataclass
class Posting:
    """One transfer (legs summing to zero) and/or changes of `held` (holds reserve with a
    positive change, release with a negative one, applied before the legs are checked).
    `if_covered`: when an account cannot cover it, skip it (its result is None) instead
    of raising InsufficientFunds for the whole batch."""

    legs: Sequence[tuple[object, int]] = ()
    currency: str = ""
    kind: str = Transfer.Kind.TRANSFER
    merchant_id: object = None
    reference: str = ""
    description: str = ""
    idempotency_key: str | None = None
    reverses_id: object = None
    created_by_id: object = None
    held: dict = field(default_factory=dict)
    if_covered: bool = False
    needs: "Posting | None" = None  # skipped when that posting (earlier in the batch) is


@dataclass
class Posted:
    """What a posting did: its transfer (None for a held-only posting), whether this call
    wrote it (False: an idempotent replay of `transfer`), and each account it touched with
    its (balance, held) right after it, by id."""

    transfer: Transfer | None
    created: bool
    after: dict
    legs: list = field(default_factory=list)  # (account id, amount) as written
    accounts: dict = field(default_factory=dict)  # id -> the locked Account (kind, owner, currency)

    def account_after(self, account_id) -> Account:
        """The account as this posting left it (balance and held right after it)."""
        row = self.accounts[account_id]
        after = Account(pk=row.pk, kind=row.kind, merchant_id=row.merchant_id, customer_id=row.customer_id)
        after.currency, after.name = row.currency, row.name
        after.balance, after.held = self.after[account_id]
        return after


def _ref_id(ref):
    if isinstance(ref, Account):
        return ref.pk
    if isinstance(ref, Key | Pool):
        return None
    return ref


def _key_where(key: Key) -> dict:
    return {
        "kind": key.kind,
        "merchant_id": key.merchant_id,
        "currency": key.currency,
        "customer_id": key.customer_id,
        "name": key.name,
    }


def keys_where(keys: Iterable[Key]) -> list[dict]:
    """The conjunctions naming `keys`, each distinct one once: keys that differ only by
    customer are one conjunction with the customers IN a list (a chunk's wallets), so
    the locking statement stays small and its shape few."""
    by_owner: dict = {}
    for key in keys:
        if key.customer_id is None:
            by_owner[key] = None
        else:
            owner = (key.kind, key.merchant_id, key.currency, key.name)
            by_owner.setdefault(owner, {})[key.customer_id] = None
    wanted = []
    for owner, customers in by_owner.items():
        if customers is None:
            wanted.append(_key_where(owner))
        else:
            kind, merchant_id, currency, name = owner
            customer_ids = sorted(customers, key=str)
            where = _key_where(Key(kind, merchant_id, currency, None, name))
            wanted.append({**where, "customer_id": customer_ids if len(customer_ids) > 1 else customer_ids[0]})
    return wanted


def accounts_by_key(keys: Iterable[Key]) -> dict:
    """The accounts that `keys` name and that exist, by Key, read in one statement
    without locking them (lock() is the locking read)."""
    return {_key_of(a): a for a in rows.select(Account, keys_where(keys))}


def _pool_where(pool: Pool) -> dict:
    return {
        "kind": BALANCE,
        "merchant_id": pool.merchant_id,
        "currency": pool.currency,
        "customer_id": None,
        "name": shard_names(),
    }


def _key_of(account: Account) -> Key:
    return Key(account.kind, account.merchant_id, account.currency, account.customer_id, account.name)


class Locked:
    """The accounts a transaction holds row locks on, by id, and how to find them by Key
    and Pool."""

    def __init__(self, accounts: Iterable[Account]):
        self.by_id = {a.pk: a for a in accounts}

    @cached_property
    def by_key(self) -> dict:
        # Built on first use: most postings name their accounts by id, and building a
        # Key per account is measurable on a plain transfer (about 40 µs of its 1 ms).
        return {_key_of(a): a for a in self.by_id.values()}

    def get(self, ref) -> Account | None:
        if isinstance(ref, Key):
            return self.by_key.get(ref)
        return self.by_id.get(_ref_id(ref))

    def pool(self, pool: Pool) -> list[Account]:
        names = set(shard_names())
        shards = [
            a
            for a in self.by_id.values()
            if a.kind == BALANCE
            and a.merchant_id == pool.merchant_id
            and a.currency == pool.currency
            and a.customer_id is None
            and a.name in names
        ]
        return sorted(shards, key=lambda a: (a.name != pool.prefer, str(a.pk)))


def lock(refs: Iterable) -> Locked:
    """Lock the accounts `refs` name (Accounts, ids, Keys, Pools), in id order, in one
    statement (FOR NO KEY UPDATE: it excludes every other writer, but not the KEY SHARE
    lock a foreign-key check takes, so an entry or hold inserted elsewhere referencing a
    locked account does not close a deadlock cycle). Re-locking in the same transaction
    is free. A Key naming no account yet is created first (see _create_missing)."""
    refs = list(refs)
    ids, keys, pools = set(), {}, {}
    for ref in refs:
        if isinstance(ref, Key):
            keys[ref] = None
        elif isinstance(ref, Pool):
            pools[(ref.merchant_id, ref.currency)] = ref
        elif ref is not None:
            ids.add(_ref_id(ref))
    wanted = keys_where(keys) + [_pool_where(pool) for pool in pools.values()]
    if ids:
        wanted.append({"id": sorted(ids, key=str)})
    if not wanted:
        return Locked([])
    locked = Locked(_lock_rows(wanted, refs))
    # A missing wallet is not opened here (a customer may have none); other accounts are.
    missing = [key for key in keys if key not in locked.by_key and key.kind != Account.Kind.CUSTOMER_WALLET]
    if missing:
        _create_missing(missing)
        return lock(refs)
    return locked


def _lock_rows(wanted: list[dict], refs: list) -> list[Account]:
    """The locking statement: the accounts matching any of `wanted` (config.rows
    conjunctions), locked in id order. `refs`, as given, only for tests that prove a
    wrong order would be caught."""
    return rows.select(Account, wanted, order_by="id", for_no_key_update=True)


def _create_missing(keys: list[Key]) -> None:
    """Open accounts named by Key that do not exist yet. Services open the accounts they
    book to before their transaction (wallet_create opens its merchant's accounts); this
    is for a first use that did not, in a fixed order."""
    from .accounts import account_open

    for key in sorted(set(keys), key=lambda k: (k.kind, k.name)):
        account_open(
            kind=key.kind,
            currency=key.currency,
            merchant_id=key.merchant_id,
            customer_id=key.customer_id,
            name=key.name,
        )


def _check_legs(legs: Sequence[tuple[int, int]]) -> None:
    if len(legs) < 2:
        raise InvalidRequest("A transfer needs at least two legs.")
    seen = set()
    for account_id, amount in legs:
        if isinstance(amount, bool) or not isinstance(amount, int) or amount == 0:
            raise InvalidRequest("Each leg amount must be a non-zero integer in minor units.", param="amount")
        if account_id in seen:
            raise InvalidRequest(f"Account {account_id} appears twice in one transfer.")
        seen.add(account_id)
    if sum(amount for _, amount in legs) != 0:
        raise InvalidRequest("The legs of a transfer must sum to zero.", param="amount")


class _Short(Exception):
    def __init__(self, account_id, available, needed):
        self.account_id, self.available, self.needed = account_id, available, needed

    def error(self) -> InsufficientFunds:
        return InsufficientFunds(
            f"Account {self.account_id} has {self.available} available, {self.needed} needed.", param="amount"
        )


def _resolve(posting: Posting, locked: Locked, state: dict) -> list[tuple[object, int]]:
    """The posting's legs as (account id, amount): a Pool leg is drawn from its shards
    (preferred first) as far as each can give, in as many legs as that takes; what pool
    legs draw on one account is merged into one leg."""
    legs, drawn = [], {}
    for ref, amount in posting.legs:
        if isinstance(ref, Pool):
            if amount >= 0:
                raise InvalidRequest("A merchant balance pool can only be debited.")
            need = -amount
            shards = locked.pool(ref)
            for shard in shards:
                balance, held = state[shard.pk]
                take = min(max(balance - held - drawn.get(shard.pk, 0), 0), need)
                if take:
                    drawn[shard.pk] = drawn.get(shard.pk, 0) + take
                    need -= take
                if not need:
                    break
            if need:
                if not shards:
                    raise InvalidRequest(f"Merchant {ref.merchant_id} has no {ref.currency} balance.")
                available = sum(state[s.pk][0] - state[s.pk][1] for s in shards)
                raise _Short(f"merchant balance {ref.merchant_id}", available, -amount)
            continue
        account = locked.get(ref)
        if account is None:
            raise InvalidRequest(f"No such account: {ref}.")
        legs.append((account.pk, amount))
    for account_id, take in drawn.items():
        mine = [i for i, (pk, _) in enumerate(legs) if pk == account_id]
        if mine:
            legs[mine[0]] = (account_id, legs[mine[0]][1] - take)
        else:
            legs.append((account_id, -take))
    return [(pk, amount) for pk, amount in legs if amount]


def _apply(posting: Posting, legs, locked: Locked, state: dict) -> dict:
    """The (balance, held) of each account the posting touches after it, checked."""
    after = {}
    for ref, delta in posting.held.items():
        account = locked.get(ref)
        balance, held = after.get(account.pk, state[account.pk])
        after[account.pk] = (balance, held + delta)
    for account_id, amount in legs:
        account = locked.by_id[account_id]
        if account.currency != posting.currency:
            raise InvalidRequest(
                f"Account {account_id} is in {account.currency}, the transfer in {posting.currency}.", param="currency"
            )
        balance, held = after.get(account_id, state[account_id])
        after[account_id] = (balance + amount, held)
    for account_id, (balance, held) in after.items():
        account = locked.by_id[account_id]
        if held < 0:
            raise InvalidRequest(f"Account {account_id} would hold less than nothing.")
        was_balance, was_held = state[account_id]
        takes = balance < was_balance or held > was_held
        if not account.allow_negative and takes and balance - held < 0:
            raise _Short(account_id, was_balance - was_held, (was_balance - balance) + (held - was_held))
    return after


def post(postings: Sequence[Posting], *, locked: Locked | None = None) -> list[Posted | None]:
    """Post the batch, in order, in the caller's transaction (call it inside one): see
    the module docstring. Returns one Posted per posting (None: skipped, `if_covered`).
    A posting whose idempotency key (per merchant) was used comes back as the first
    transfer, `created` False, moving nothing; the same key with other legs raises
    Conflict. Raises InvalidRequest (unbalanced, zero or mixed-currency legs),
    InsufficientFunds (an account cannot cover a posting that is not `if_covered`;
    nothing is written then). `locked`: the caller's lock() of every account involved."""
    for posting in postings:
        if posting.legs:
            concrete = [(_ref_id(ref) or ref, amount) for ref, amount in posting.legs]
            _check_legs(concrete)
    if locked is None or not all(_covered(locked, p) for p in postings):
        locked = lock([ref for p in postings for ref in (*(r for r, _ in p.legs), *p.held)])
    state = {pk: (a.balance, a.held) for pk, a in locked.by_id.items()}
    plans: list = []
    replayed: dict = {}
    skipped = set()
    for posting in postings:
        if posting.needs is not None and id(posting.needs) in skipped:
            skipped.add(id(posting))
            plans.append(None)
            continue
        try:
            legs = _resolve(posting, locked, state)
            after = _apply(posting, legs, locked, state)
        except _Short as short:
            if posting.idempotency_key is not None:
                # A retry of a transfer made when the money was there is a replay still.
                first = _first_transfers(_keys_used([(posting.merchant_id, posting.idempotency_key)]))
                if first:
                    replayed.update(first)
                    plans.append(None)
                    continue
            if posting.if_covered:
                skipped.add(id(posting))
                plans.append(None)
                continue
            raise short.error() from None
        state.update(after)
        plans.append((posting, legs, after))
    if replayed:
        return _with_replays(postings, plans, replayed, locked)
    replays = _write(plans, locked)
    if replays:
        return _with_replays(postings, plans, replays, locked)
    results = []
    for plan in plans:
        if plan is None:
            results.append(None)
            continue
        posting, legs, after = plan
        results.append(
            Posted(
                transfer=getattr(posting, "_transfer", None),
                created=True,
                after=after,
                legs=legs,
                accounts={pk: locked.by_id[pk] for pk in after},
            )
        )
    for pk, (balance, held) in state.items():
        locked.by_id[pk].balance, locked.by_id[pk].held = balance, held
    _refresh_callers(postings, locked)
    return results


def _covered(locked: Locked, posting: Posting) -> bool:
    for ref in (*(r for r, _ in posting.legs), *posting.held):
        if isinstance(ref, Pool):
            if not locked.pool(ref):
                return False
        elif locked.get(ref) is None:
            return False
    return True


def _refresh_callers(postings: Sequence[Posting], locked: Locked) -> None:
    """Give the Account objects the caller passed their new balance and held."""
    for posting in postings:
        for ref in (*(r for r, _ in posting.legs), *posting.held):
            if isinstance(ref, Account) and ref.pk in locked.by_id:
                ref.balance, ref.held = locked.by_id[ref.pk].balance, locked.by_id[ref.pk].held


def _with_replays(postings, plans, replays: dict, locked: Locked) -> list[Posted | None]:
    """Some keys were used already (nothing was written): those postings are replays of
    the first transfer (checked to be the same); the others are posted again on the
    unchanged balances."""
    fresh = [
        p for p in postings if p.idempotency_key is None or _scope(p.merchant_id, p.idempotency_key) not in replays
    ]
    again = iter(post(fresh, locked=locked) if fresh else [])
    results = []
    for posting, plan in zip(postings, plans, strict=True):
        existing = (
            replays.get(_scope(posting.merchant_id, posting.idempotency_key)) if posting.idempotency_key else None
        )
        if existing is None:
            results.append(next(again))
            continue
        transfer, entries = existing
        legs = plan[1] if plan is not None else _known_legs(posting, locked)
        if sorted(entries) != sorted(legs) and not _same_pooled(entries, legs, locked):
            raise Conflict(f"Idempotency key {posting.idempotency_key!r} was already used for a different transfer.")
        results.append(Posted(transfer=transfer, created=False, after={}, legs=entries))
    return results


def _known_legs(posting: Posting, locked: Locked) -> list:
    """The legs of a posting that could not be drawn (short): pool legs on its preferred
    shard, the rest as named."""
    legs = []
    for ref, amount in posting.legs:
        if isinstance(ref, Pool):
            shards = locked.pool(ref)
            legs.append((shards[0].pk if shards else None, amount))
        else:
            account = locked.get(ref)
            legs.append((account.pk if account else None, amount))
    return legs


def _same_pooled(first, now, locked: Locked) -> bool:
    """The same transfer but for which shards of a merchant's balance it moved (the pool
    drew on others, or the customer's shard moved when MERCHANT_BALANCE_SHARDS grew)."""

    def fold(legs):
        out = {}
        for account_id, amount in legs:
            account = locked.by_id.get(account_id)
            pooled = account is not None and account.kind == BALANCE and account.name in shard_names()
            key = ("pool", account.merchant_id, account.currency) if pooled else account_id
            out[key] = out.get(key, 0) + amount
        return out

    return fold(first) == fold(now)


def _transfer_row(posting: Posting, legs, now) -> Transfer:
    transfer = Transfer(
        id=uuid.uuid4(),
        merchant_id=posting.merchant_id,
        currency=posting.currency,
        amount=sum(amount for _, amount in legs if amount > 0),
        kind=posting.kind,
        reference=posting.reference,
        description=posting.description,
        idempotency_key=posting.idempotency_key,
        reverses_id=posting.reverses_id,
        created_by_id=posting.created_by_id,
        created_at=now,
    )
    posting._transfer = transfer
    return transfer


def _write(plans, locked: Locked) -> dict:
    """Write the planned postings: transfers, entries (in order: entry ids follow each
    account's running balance), balances. Returns {(merchant id, key): (transfer,
    [(account id, amount)])} of keys already used, having written nothing then."""
    now = timezone.now()
    transfers, entries, balances = [], [], {}
    for plan in plans:
        if plan is None:
            continue
        posting, legs, after = plan
        balances.update(after)
        if not legs:
            continue
        transfer = _transfer_row(posting, legs, now)
        transfers.append(transfer)
        # Rows in ENTRY_COLUMNS' order, not Entry objects: nothing reads them back, and
        # building a model instance costs more than the rest of its share of the write.
        entries += [(transfer.pk, account_id, amount, after[account_id][0], now) for account_id, amount in legs]
    keys = [(t.merchant_id, t.idempotency_key) for t in transfers if t.idempotency_key is not None]
    if len(set(keys)) < len(keys):
        raise Conflict("One idempotency key was given to two transfers of one batch.")
    if not balances:
        return {}
    if connection.vendor == "postgresql":
        used = _write_postgres(transfers, entries, balances, keys)
    else:
        used = _write_orm(transfers, entries, balances, keys)
    return _first_transfers(used) if used else {}


def _write_orm(transfers, entries, balances, keys) -> list:
    if keys:
        used = _keys_used(keys)
        if used:
            return used
    Transfer.objects.bulk_create(transfers)
    names = [name for name, _ in ENTRY_COLUMNS]
    Entry.objects.bulk_create([Entry(**dict(zip(names, row, strict=True))) for row in entries])
    for account_id, (balance, held) in balances.items():
        Account.objects.filter(pk=account_id).update(balance=balance, held=held)
    return []


def _keys_used(keys) -> list:
    wanted = Q()
    for merchant_id, key in keys:
        wanted |= Q(merchant_id=merchant_id, idempotency_key=key)
    return list(Transfer.objects.filter(wanted).values_list("pk", flat=True))


def _columns(model, names):
    return ", ".join(model._meta.get_field(name).column for name in names)


TRANSFER_COLUMNS = (
    ("id", "uuid"),
    ("merchant", "uuid"),
    ("currency", "text"),
    ("amount", "bigint"),
    ("kind", "text"),
    ("reference", "text"),
    ("description", "text"),
    ("idempotency_key", "text"),
    ("reverses", "uuid"),
    ("created_by", "integer"),
    ("created_at", "timestamptz"),
)
ENTRY_COLUMNS = (  # by attname: an entry row is written as these values
    ("transfer_id", "uuid"),
    ("account_id", "uuid"),
    ("amount", "bigint"),
    ("balance_after", "bigint"),
    ("created_at", "timestamptz"),
)


def _write_postgres(transfers, entries, balances, keys) -> list:
    """The write as one statement: data-modifying CTEs insert the transfers and entries
    and update the balances, all guarded by `dup` (any of the batch's keys already used:
    then nothing is written and its transfer ids are returned)."""
    ctes, params = [], []
    guard = ""
    if keys:
        pairs, pair_params = row_source(keys, ("uuid", "text"))
        # Equality on both columns (and the partial indexes' own predicates), so each
        # key is an index probe of transfer_idempotency_key_unique_per_merchant / _system,
        # one per key: LATERAL ... OFFSET 0 keeps the planner from joining the other way
        # round (it estimates a partial index of recent rows as tiny, then reads all of
        # it for every batch, the merchant's every keyed transfer).
        table = Transfer._meta.db_table
        ctes.append(
            f"k(m, key) AS ({pairs}), "
            f"dup AS (SELECT t.id FROM k CROSS JOIN LATERAL (SELECT t.id FROM {table} t "
            "WHERE t.merchant_id = k.m AND t.idempotency_key = k.key "
            "AND t.merchant_id IS NOT NULL AND t.idempotency_key IS NOT NULL OFFSET 0) t "
            f"UNION ALL SELECT t.id FROM k CROSS JOIN LATERAL (SELECT t.id FROM {table} t "
            "WHERE k.m IS NULL AND t.merchant_id IS NULL AND t.idempotency_key = k.key "
            "AND t.idempotency_key IS NOT NULL OFFSET 0) t)"
        )
        params += pair_params
        guard = " WHERE NOT EXISTS (SELECT 1 FROM dup)"
    if transfers:
        names = [name for name, _ in TRANSFER_COLUMNS]
        rows = [
            (
                t.id,
                t.merchant_id,
                t.currency,
                t.amount,
                t.kind,
                t.reference,
                t.description,
                t.idempotency_key,
                t.reverses_id,
                t.created_by_id,
                t.created_at,
            )
            for t in transfers
        ]
        values, values_params = row_source(rows, [t for _, t in TRANSFER_COLUMNS])
        ctes.append(
            f"ins_t AS (INSERT INTO {Transfer._meta.db_table} ({_columns(Transfer, names)}) "
            f"SELECT * FROM ({values}) v{guard})"
        )
        params += values_params
        names = [name for name, _ in ENTRY_COLUMNS]
        values, values_params = row_source(entries, [t for _, t in ENTRY_COLUMNS])
        ctes.append(
            f"ins_e AS (INSERT INTO {Entry._meta.db_table} ({_columns(Entry, names)}) "
            f"SELECT * FROM ({values}) v{guard})"
        )
        params += values_params
    rows = [(pk, balance, held) for pk, (balance, held) in balances.items()]
    values, values_params = row_source(rows, ("uuid", "bigint", "bigint"))
    table = Account._meta.db_table
    ctes.append(
        f"upd AS (UPDATE {table} a SET balance = v.balance, held = v.held FROM ({values}) "
        f"v(id, balance, held) WHERE a.id = v.id{guard.replace(' WHERE', ' AND')})"
    )
    params += values_params
    final = "SELECT id FROM dup" if keys else "SELECT 1 WHERE false"
    with connection.cursor() as cursor:
        try:
            cursor.execute(f"WITH {', '.join(ctes)} {final}", params)
        except IntegrityError as exc:
            if keys and "idempotency_key" in str(exc):
                # The key's first use moved other accounts and committed after our
                # snapshot: the same key for another transfer.
                raise Conflict("An idempotency key of this transfer was already used for a different one.") from exc
            raise
        return [row[0] for row in cursor.fetchall()]


def _scope(merchant_id, key) -> tuple:
    return (str(merchant_id) if merchant_id is not None else None, key)


def _first_transfers(ids) -> dict:
    found: dict = {}
    for entry in Entry.objects.filter(transfer_id__in=ids).select_related("transfer").order_by("id"):
        transfer = entry.transfer
        found.setdefault(_scope(transfer.merchant_id, transfer.idempotency_key), (transfer, []))[1].append(
            (entry.account_id, entry.amount)
        )
    return found
