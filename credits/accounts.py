"""Credit accounts: a customer's credit account and its merchant's counter-accounts, how
grants are consumed, and the helpers every credits write shares.

Units move between a customer's credit account (kind `credits`, no overdraft) and three
counter-accounts of its merchant in the "credits" unit: `issuance` (external funding,
may go negative: where credits come from and where revoked ones go back), `consumed`
(debits) and `expired`. Each counter-account is split into COUNTER_SHARDS accounts and a
customer always uses the same shard (chosen from its id), so debits and grants of
different customers do not all queue on one merchant row: a counter row is locked until
its transaction commits, and a single one would serialise every debit of the merchant.
The ledger is unchanged: every transfer still balances, a merchant's total of a
counter is the sum of its shards (selectors.credits_counters).

Lock order, in every write here: the customer's credit account alone first (FOR NO KEY
UPDATE), then wallets.transfer_create locks the accounts of the transfer in pk order
(the customer's again, already held, and one counter-account of its shard). A
transaction holds at most one customer's credit account, and whoever holds a
counter-account already holds its customer account, so no two credit writers deadlock.
`Grant.remaining` is only read and written under the customer account's lock.

Accounts are created before the transaction that locks them (see wallets.wallet_create:
an uncommitted account insert awaited by a writer holding a lock could deadlock).
"""

import logging
import uuid

from django.db import connection

from config import rows
from config.errors import InvalidRequest
from payments.identity.models import Customer, Merchant
from wallets.models import CREDITS_UNIT, Account
from wallets.services import account_get_or_create

from .models import Grant

logger = logging.getLogger("paydesk.credits")

ISSUANCE, CONSUMED, EXPIRED = "issuance", "consumed", "expired"
MERCHANT_ACCOUNTS = {
    ISSUANCE: Account.Kind.EXTERNAL_FUNDING,
    CONSUMED: Account.Kind.MERCHANT_BALANCE,
    EXPIRED: Account.Kind.MERCHANT_BALANCE,
}
MAX_UNITS = 10**12
COUNTER_SHARDS = 16


def counter_shard(customer_id) -> int:
    """Which of its merchant's counter-account shards a customer uses, for good."""
    return uuid.UUID(str(customer_id)).int % COUNTER_SHARDS


def counter_account_name(counter: str, shard: int) -> str:
    return f"{counter}.{shard:02d}"


def credit_counter_accounts(*, merchant_id, customer_id) -> dict[str, Account]:
    """The merchant's issuance, consumed and expired accounts of the customer's shard,
    by counter name, created on first use."""
    shard = counter_shard(customer_id)
    names = {counter_account_name(counter, shard): counter for counter in MERCHANT_ACCOUNTS}
    found = {
        names[a.name]: a
        for a in Account.objects.filter(
            merchant_id=merchant_id, customer__isnull=True, currency=CREDITS_UNIT, name__in=list(names)
        )
        if MERCHANT_ACCOUNTS[names[a.name]] == a.kind
    }
    for name, counter in names.items():
        if counter not in found:
            found[counter] = account_get_or_create(
                kind=MERCHANT_ACCOUNTS[counter], currency=CREDITS_UNIT, merchant=Merchant(pk=merchant_id), name=name
            )
    return found


def credit_account_get_or_create(*, customer: Customer) -> Account:
    """The customer's credit account (and its counter-accounts), created on first use, as it is now."""
    return _accounts_read(customer)[0]


# Which accounts a customer's credits use, by customer id, as this process first read
# them: the field values of (its credit account, its counter-accounts by name). Which rows
# they are never changes (the ledger never deletes an account: every reference to one is
# PROTECT), so the write paths, which lock them and so read them afresh, skip the read.
# Only what was read outside a transaction (so committed) is kept. Bounded: emptied when
# full. Tests empty it between tests (conftest.py).
_KNOWN: dict = {}
_KNOWN_AT_MOST = 10_000
_FIELDS = tuple(f.attname for f in Account._meta.concrete_fields)


def _known_clear() -> None:
    _KNOWN.clear()


def _account(values: tuple) -> Account:
    return Account.from_db(Account.objects.db, _FIELDS, values)


def _values(account: Account) -> tuple:
    return tuple(getattr(account, f) for f in _FIELDS)


def _accounts(customer: Customer) -> tuple[Account, dict[str, Account]]:
    """(the customer's credit account, its counter-accounts), read in one statement and
    created on first use; once known to this process, not read again (_KNOWN). For the
    write paths only: they lock what they use, so the balances on these rows are not read
    (they are as first read); fresh instances on every call, none shared between callers."""
    known = _KNOWN.get(customer.pk)
    if known is not None:
        account_values, counter_values = known
        return _account(account_values), {counter: _account(values) for counter, values in counter_values.items()}
    account, counters = _accounts_read(customer)
    if connection.in_atomic_block:
        return account, counters  # what it created may yet be rolled back: known only once committed
    if len(_KNOWN) >= _KNOWN_AT_MOST:
        _KNOWN.clear()
    _KNOWN[customer.pk] = (_values(account), {counter: _values(a) for counter, a in counters.items()})
    return account, counters


def _accounts_read(customer: Customer) -> tuple[Account, dict[str, Account]]:
    shard = counter_shard(customer.pk)
    names = {counter_account_name(counter, shard): counter for counter in MERCHANT_ACCOUNTS}
    found = rows.select(
        Account,
        [
            {"merchant_id": customer.merchant_id, "customer_id": None, "currency": CREDITS_UNIT, "name": list(names)},
            {
                "kind": Account.Kind.CREDITS,
                "merchant_id": customer.merchant_id,
                "customer_id": customer.pk,
                "currency": CREDITS_UNIT,
                "name": "",
            },
        ],
    )
    account = next((a for a in found if a.customer_id is not None and a.kind == Account.Kind.CREDITS), None)
    counters = {
        names[a.name]: a for a in found if a.customer_id is None and MERCHANT_ACCOUNTS.get(names.get(a.name)) == a.kind
    }
    if len(counters) < len(names):
        counters = credit_counter_accounts(merchant_id=customer.merchant_id, customer_id=customer.pk)
    if account is None:
        account = account_get_or_create(
            kind=Account.Kind.CREDITS,
            currency=CREDITS_UNIT,
            merchant=Merchant(pk=customer.merchant_id),
            customer=customer,
        )
    return account, counters


def _lock(account: Account) -> Account:
    # A fixed-shape statement (config.rows): no ORM compile on every debit.
    [locked] = rows.select(Account, [{"id": account.pk}], for_no_key_update=True)
    return locked


def _check_units(units, param: str = "units") -> None:
    if isinstance(units, bool) or not isinstance(units, int) or units <= 0 or units > MAX_UNITS:
        raise InvalidRequest(f"Must be a positive whole number of credits (at most {MAX_UNITS}).", param=param)


GRANTS_PAGE = 100


def _live_grants(account: Account, *, offset: int = 0) -> list[Grant]:
    """A page (GRANTS_PAGE from `offset`) of the grants with units left, in consumption
    order: oldest grant first (by grant time). A fixed-shape statement (config.rows):
    every debit reads it, and the ORM would compile it on each.

    Oldest-first is the rule of the credits issue (#6), on purpose: credits are spent in
    the order they were bought, as a customer reads them on a statement, and a refund
    takes back what is left of *that* purchase (credits_revoke_refunded), which under
    this order is what the customer has not yet used of it. The price: a newer grant
    that expires sooner than an older one may lapse partly unused.
    """
    return rows.select(
        Grant,
        [{"account_id": account.pk, "remaining__gt": 0}],
        order_by=("created_at", "id"),
        limit=GRANTS_PAGE,
        offset=offset,
    )


def _live_grants_all(account: Account) -> list[Grant] | None:
    """Every grant of the account with units left, in consumption order, when they fit on
    one page (one statement: a debit's expiry and consumption both use it); None when
    there are a page or more of them (each then reads its own)."""
    page = _live_grants(account)
    return page if len(page) < GRANTS_PAGE else None


def _consume(account: Account, units: int, *, first: Grant | None = None, live: list[Grant] | None = None) -> None:
    """Take `units` off the grants' remaining (first `first`, then oldest-first). Caller holds the lock.
    `live`: the first page of live grants, as the caller read it under this lock (grants
    it has expired since are at 0 left and skipped), instead of reading it again."""
    changed = []
    if first is not None:
        first = Grant.objects.get(pk=first.pk)
        take = min(first.remaining, units)
        if take:
            first.remaining -= take
            units -= take
            changed.append(first)
    # Pages of plain reads, not a server-side cursor (its DECLARE, FETCH and CLOSE are
    # three round trips for what is almost always one grant). Nothing is written until
    # bulk_update, so the pages do not shift under the offsets (`first`, already taken
    # from, is skipped where it falls in them).
    offset = 0
    while units:
        page = live if live is not None and offset == 0 else _live_grants(account, offset=offset)
        for grant in page:
            if (first is not None and grant.pk == first.pk) or not grant.remaining:
                continue
            take = min(grant.remaining, units)
            grant.remaining -= take
            units -= take
            changed.append(grant)
            if not units:
                break
        if len(page) < GRANTS_PAGE:
            break
        offset += GRANTS_PAGE
    if units:  # remaining and balance disagree: the audit's business, never silently fixed
        logger.error("credit grants cover less than the balance", extra={"account": str(account.pk), "left": units})
    if len(changed) == 1:  # almost always: one fixed-shape UPDATE, not bulk_update's CASE compiled per call
        rows.update(Grant, {"id": changed[0].pk}, {"remaining": changed[0].remaining})
    else:
        Grant.objects.bulk_update(changed, ["remaining"])


def _emit(*, merchant_id, type: str, data: dict) -> None:
    from webhooks.services import event_emit

    event_emit(merchant=Merchant(pk=merchant_id), type=type, data=data)
