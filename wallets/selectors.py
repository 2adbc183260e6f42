"""Reads of the ledger: wallets for an API caller, the ledger listing, the audit."""

import uuid

from django.db import connection
from django.db.models import QuerySet
from django.utils import timezone

from config import rows
from config.errors import InvalidRequest, NotFound
from config.ids import parse_uuid
from payments.identity.models import Merchant
from payments.identity.selectors import customer_get

from .models import Account, Entry, Hold, Transfer

MAX_ROWS_PER_CHECK = 100


def customer_for_wallet(*, merchant: Merchant | None, customer_id, param: str | None = None):
    """customer_get, with a malformed id also reported on `param` (customer_get's own
    parse_uuid does not name it)."""
    try:
        parse_uuid(customer_id, what="customer")
    except NotFound as exc:
        raise NotFound(exc.message, param=param)
    return customer_get(merchant=merchant, customer_id=customer_id, param=param)


def wallet_list(*, customer) -> QuerySet[Account]:
    return Account.objects.filter(kind=Account.Kind.CUSTOMER_WALLET, customer=customer).order_by("currency")


def wallet_get(*, merchant: Merchant | None, customer_id, currency: str | None, param: str | None = None) -> Account:
    """The customer's wallet in `currency`, as seen by `merchant` (None: staff, any merchant).

    One indexed row: the balance is cached on it, so this costs the same whatever the
    ledger's size. Without a currency, the customer's only wallet.
    Raises NotFound (unknown or another merchant's customer; a customer with no wallet),
    InvalidRequest with param currency (a currency the customer has no wallet in while
    it has others: a currency mismatch; no currency given and wallets in several).
    """
    # Fast path, one indexed query: this merchant's customer's wallet in this currency, or
    # its only wallet when no currency is given.
    try:
        pk = uuid.UUID(str(customer_id))
    except ValueError:
        pk = None
    if pk is not None:
        owner = {"kind": Account.Kind.CUSTOMER_WALLET, "customer_id": pk}
        if merchant is not None:
            owner["merchant_id"] = merchant.pk
        if currency:
            owner["currency"] = currency.lower()
        found = rows.select(Account, [owner], limit=2)
        if len(found) == 1:
            return found[0]
    # Slow path, to name the right error (or find the only wallet when no currency is given).
    customer = customer_for_wallet(merchant=merchant, customer_id=customer_id, param=param)
    wallets = wallet_list(customer=customer)
    if currency:
        currency = currency.lower()
        found = {w.currency: w for w in wallets}
        if currency in found:
            return found[currency]
        if found:
            raise InvalidRequest(
                f"Currency mismatch: customer {customer.pk} has wallets in {', '.join(sorted(found))}, not {currency}.",
                param="currency",
            )
        raise NotFound(f"Customer {customer.pk} has no wallet.")
    found = list(wallets[:2])
    if not found:
        raise NotFound(f"Customer {customer.pk} has no wallet.")
    if len(found) > 1:
        raise InvalidRequest("This customer has wallets in several currencies: name one.", param="currency")
    return found[0]


def wallet_ledger(*, wallet: Account) -> QuerySet[Entry]:
    """The wallet's entries, newest first (index on (account, -id))."""
    return Entry.objects.filter(account=wallet).select_related("transfer").order_by("-id")


def hold_get(*, merchant: Merchant | None, hold_id) -> Hold:
    """A hold on one of `merchant`'s accounts (None: staff). Raises NotFound."""
    pk = parse_uuid(hold_id, what="hold")
    holds = Hold.objects.select_related("account")
    if merchant is not None:
        holds = holds.filter(account__merchant=merchant)
    hold = holds.filter(pk=pk).first()
    if hold is None:
        raise NotFound(f"No such hold: {hold_id}.")
    return hold


# --- Audit -----------------------------------------------------------------------------


def _id(value) -> str:
    """A UUID from raw SQL as its canonical string (SQLite returns 32 hex digits)."""
    return str(value if isinstance(value, uuid.UUID) else uuid.UUID(str(value)))


def _rows(sql: str, params=()) -> list[tuple]:
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return cursor.fetchall()


def ledger_audit() -> dict:
    """Check every ledger invariant over the whole ledger with a few set-based SQL
    aggregates (no Python loop over entries). Returns a JSON-able report:
    {"ok", "checked_at", "totals": {...}, "violations": {check: [rows...]}} with at most
    MAX_ROWS_PER_CHECK rows listed per check. Reports only; never repairs.

    Checks: per currency the balances sum to 0; each cached balance equals the sum of
    its entries and its latest balance_after; every entry's balance_after equals the
    running sum of its account's entries up to it (a window function); no non-overdraft
    account below 0 or with held > balance; held equals the sum of pending holds; each
    transfer's entries sum to 0 and are in the transfer's currency; held is never
    negative; reversals never exceed the transfer they reverse; each reversal's legs
    mirror its original's (same accounts, opposite signs, scaled) and, added up, never
    take back more than a leg.
    """
    account, entry, hold, transfer = (m._meta.db_table for m in (Account, Entry, Hold, Transfer))
    limit = MAX_ROWS_PER_CHECK
    violations = {}

    violations["currency_sum_not_zero"] = [
        {"currency": currency, "sum": int(total)}
        for currency, total in _rows(
            f"SELECT currency, SUM(balance) FROM {account} GROUP BY currency HAVING SUM(balance) <> 0 "
            f"ORDER BY currency LIMIT {limit}"
        )
    ]
    violations["balance_not_sum_of_entries"] = [
        {"account": _id(pk), "balance": int(balance), "entries_sum": int(total)}
        for pk, balance, total in _rows(
            f"SELECT a.id, a.balance, COALESCE(e.total, 0) FROM {account} a "
            f"LEFT JOIN (SELECT account_id, SUM(amount) AS total FROM {entry} GROUP BY account_id) e "
            f"ON e.account_id = a.id WHERE a.balance <> COALESCE(e.total, 0) ORDER BY a.id LIMIT {limit}"
        )
    ]
    violations["balance_not_last_balance_after"] = [
        {"account": _id(pk), "balance": int(balance), "last_balance_after": int(after)}
        for pk, balance, after in _rows(
            f"SELECT a.id, a.balance, e.balance_after FROM {account} a "
            f"JOIN (SELECT account_id, MAX(id) AS last_id FROM {entry} GROUP BY account_id) l ON l.account_id = a.id "
            f"JOIN {entry} e ON e.id = l.last_id WHERE e.balance_after <> a.balance ORDER BY a.id LIMIT {limit}"
        )
    ]
    # Every entry, not just the newest: balance_after is the running sum of the account's
    # entries in id order (ids are drawn under the account's lock, so id order is posting order).
    violations["balance_after_not_running_sum"] = [
        {"entry": int(pk), "account": _id(account_id), "balance_after": int(after), "running_sum": int(running)}
        for pk, account_id, after, running in _rows(
            f"SELECT id, account_id, balance_after, running FROM ("
            f"SELECT id, account_id, balance_after, SUM(amount) OVER (PARTITION BY account_id ORDER BY id "
            f"ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW) AS running FROM {entry}) s "
            f"WHERE balance_after <> running ORDER BY id LIMIT {limit}"
        )
    ]
    violations["negative_balance"] = [
        {"account": _id(pk), "kind": kind, "balance": int(balance), "held": int(held)}
        for pk, kind, balance, held in _rows(
            f"SELECT id, kind, balance, held FROM {account} "
            f"WHERE held < 0 OR (NOT allow_negative AND (balance < 0 OR balance - held < 0)) ORDER BY id LIMIT {limit}"
        )
    ]
    violations["held_not_sum_of_pending_holds"] = [
        {"account": _id(pk), "held": int(held), "pending_holds": int(total)}
        for pk, held, total in _rows(
            f"SELECT a.id, a.held, COALESCE(h.total, 0) FROM {account} a "
            f"LEFT JOIN (SELECT account_id, SUM(amount) AS total FROM {hold} WHERE status = %s GROUP BY account_id) h "
            f"ON h.account_id = a.id WHERE a.held <> COALESCE(h.total, 0) ORDER BY a.id LIMIT {limit}",
            [Hold.Status.PENDING],
        )
    ]
    violations["transfer_not_balanced"] = [
        {"transfer": _id(pk), "sum": int(total), "amount": int(amount), "moved": int(moved or 0)}
        for pk, total, amount, moved in _rows(
            f"SELECT t.id, COALESCE(SUM(e.amount), 0), t.amount, "
            f"SUM(CASE WHEN e.amount > 0 THEN e.amount ELSE 0 END) FROM {transfer} t "
            f"LEFT JOIN {entry} e ON e.transfer_id = t.id GROUP BY t.id, t.amount "
            f"HAVING COALESCE(SUM(e.amount), 0) <> 0 OR COUNT(e.id) < 2 "
            f"OR SUM(CASE WHEN e.amount > 0 THEN e.amount ELSE 0 END) <> t.amount ORDER BY t.id LIMIT {limit}"
        )
    ]
    violations["entry_currency_mismatch"] = [
        {"entry": int(pk), "account_currency": a_cur, "transfer_currency": t_cur}
        for pk, a_cur, t_cur in _rows(
            f"SELECT e.id, a.currency, t.currency FROM {entry} e JOIN {account} a ON a.id = e.account_id "
            f"JOIN {transfer} t ON t.id = e.transfer_id WHERE a.currency <> t.currency ORDER BY e.id LIMIT {limit}"
        )
    ]
    violations["over_reversed"] = [
        {"transfer": _id(pk), "amount": int(amount), "reversed": int(total)}
        for pk, amount, total in _rows(
            f"SELECT t.id, t.amount, r.total FROM {transfer} t "
            f"JOIN (SELECT reverses_id, SUM(amount) AS total FROM {transfer} WHERE reverses_id IS NOT NULL "
            f"GROUP BY reverses_id) r ON r.reverses_id = t.id WHERE r.total > t.amount ORDER BY t.id LIMIT {limit}"
        )
    ]
    # Each reversal's legs beside its original's, one row per (reversal, account): both
    # sides are read by transfer id only and met by grouping, never by a join on
    # (transfer, account). Given that join, the planner may find a leg by reading its
    # account's every entry, once per reversal leg (with statistics from when the ledger
    # was small): minutes for a busy wallet with many refunds. One leg per account and
    # transfer (entry_one_leg_per_account), so MAX picks the leg.
    reversal_legs = (
        f"SELECT reversal, original, account_id, MAX(mine) AS amount, MAX(theirs) AS leg FROM ("
        f"SELECT r.id AS reversal, r.reverses_id AS original, e.account_id, e.amount AS mine, NULL AS theirs "
        f"FROM {transfer} r JOIN {entry} e ON e.transfer_id = r.id WHERE r.reverses_id IS NOT NULL "
        f"UNION ALL SELECT r.id, r.reverses_id, o.account_id, NULL, o.amount "
        f"FROM {transfer} r JOIN {entry} o ON o.transfer_id = r.reverses_id WHERE r.reverses_id IS NOT NULL"
        f") x GROUP BY reversal, original, account_id"
    )
    # A reversal mirrors its original: each leg is on one of the original's accounts, with
    # the opposite sign, scaled by reversal.amount / original.amount. Whole minor units
    # make a split's partial legs round, never by as much as the original's number of legs
    # (two-leg transfers reverse exactly). NUMERIC: the products exceed bigint.
    violations["reversal_not_mirrored"] = [
        {
            "reversal": _id(r_id),
            "original": _id(t_id),
            "account": _id(account_id),
            "amount": int(amount),
            "original_leg": None if leg is None else int(leg),
        }
        for r_id, t_id, account_id, amount, leg in _rows(
            f"SELECT g.reversal, g.original, g.account_id, g.amount, g.leg FROM ({reversal_legs}) g "
            f"JOIN {transfer} r ON r.id = g.reversal JOIN {transfer} t ON t.id = g.original "
            f"WHERE g.amount IS NOT NULL AND (g.leg IS NULL OR (g.leg > 0) = (g.amount > 0) "
            f"OR ABS(CAST(g.amount AS NUMERIC) * t.amount + CAST(g.leg AS NUMERIC) * r.amount) "
            f">= CAST(t.amount AS NUMERIC) * (SELECT COUNT(*) FROM {entry} n WHERE n.transfer_id = t.id)) "
            f"ORDER BY g.reversal, g.account_id LIMIT {limit}"
        )
    ]
    # Cumulatively, the reversals of a transfer take back at most each of its legs (with
    # the balance and amount checks above, a fully reversed transfer is exactly negated).
    violations["reversed_beyond_leg"] = [
        {"original": _id(t_id), "account": _id(account_id), "leg": int(leg), "reversed": int(total)}
        for t_id, account_id, leg, total in _rows(
            f"SELECT original, account_id, MAX(leg), COALESCE(SUM(amount), 0) FROM ({reversal_legs}) g "
            f"WHERE leg IS NOT NULL GROUP BY original, account_id "
            f"HAVING ABS(COALESCE(SUM(amount), 0)) > ABS(MAX(leg)) ORDER BY original, account_id LIMIT {limit}"
        )
    ]
    totals = dict(
        zip(
            ("accounts", "transfers", "entries", "pending_holds"),
            _rows(
                f"SELECT (SELECT COUNT(*) FROM {account}), (SELECT COUNT(*) FROM {transfer}), "
                f"(SELECT COUNT(*) FROM {entry}), (SELECT COUNT(*) FROM {hold} WHERE status = %s)",
                [Hold.Status.PENDING],
            )[0],
            strict=True,
        )
    )
    return {
        "ok": not any(violations.values()),
        "checked_at": timezone.now().isoformat(),
        "totals": {k: int(v) for k, v in totals.items()},
        "violations": violations,
    }


def ledger_audit_format(report: dict) -> str:
    """The report as text for the command and admin messages."""
    lines = [
        f"Ledger audit at {report['checked_at']}: {'OK' if report['ok'] else 'FAILED'}",
        "  " + ", ".join(f"{k}={v}" for k, v in report["totals"].items()),
    ]
    for check, violations in report["violations"].items():
        lines.append(f"  [{'FAIL' if violations else 'ok'}] {check}" + (f": {len(violations)}" if violations else ""))
        for row in violations:
            lines.append(f"      {row}")
    return "\n".join(lines)
