"""Credit expiry: a grant's units left at its expiry move from the customer's credit
account to the merchant's expired account, posted by the periodic task and by every
write that locks the account first (expired credits cannot be spent or revoked).
"""

from datetime import datetime

from django.db import transaction
from django.utils import timezone

from config import rows
from payments.identity.models import Merchant
from wallets.models import CREDITS_UNIT, Account, Transfer
from wallets.services import transfer_create

from .accounts import EXPIRED, _lock, credit_counter_accounts
from .models import Grant


def _expire_due(
    locked: Account, *, now: datetime, accounts: dict[str, Account], live: list[Grant] | None = None
) -> int:
    """Post every due expiry of this (locked) account to the ledger. Returns the units expired.

    `live`: every grant of the account with units left, read under this lock (a debit's
    one read of them, accounts._live_grants_all, when they fit on a page): the due
    ones are found among them, without a statement, and set to 0 left in place."""
    if live is None:
        # A fixed-shape statement (config.rows): every caller asks, and almost always finds none.
        due = rows.select(
            Grant, [{"account_id": locked.pk, "remaining__gt": 0, "expires_at__lte": now}], order_by="expires_at"
        )
    else:
        due = sorted(
            (g for g in live if g.remaining > 0 and g.expires_at is not None and g.expires_at <= now),
            key=lambda g: g.expires_at,
        )
    if not due:
        return 0
    total = sum(g.remaining for g in due)
    transfer = transfer_create(
        legs=[(locked, -total), (accounts[EXPIRED], total)],
        currency=CREDITS_UNIT,
        kind=Transfer.Kind.DEBIT,
        merchant=Merchant(pk=locked.merchant_id),
        reference=f"credits:expire:{locked.pk}",
        description=f"{len(due)} grant(s) expired",
    )
    for grant in due:
        grant.expired_units += grant.remaining
        grant.remaining = 0
        grant.expired_at = now
        grant.expiry_transfer = transfer
    Grant.objects.bulk_update(due, ["expired_units", "remaining", "expired_at", "expiry_transfer"])
    return total


def credits_expire(*, now: datetime | None = None) -> int:
    """Post every due expiry to the ledger (periodic task): for each credit account with
    an expired grant that has units left, one short transaction that locks the account
    and moves those units to the merchant's expired account. Safe to run twice and
    concurrently with debits (which post due expiries themselves). Returns the units expired."""
    now = now or timezone.now()
    total = 0
    account_ids = (
        Grant.objects.filter(remaining__gt=0, expires_at__lte=now).values_list("account_id", flat=True).distinct()
    )
    for account in Account.objects.filter(pk__in=list(account_ids)):
        accounts = credit_counter_accounts(merchant_id=account.merchant_id, customer_id=account.customer_id)
        with transaction.atomic():
            total += _expire_due(_lock(account), now=now, accounts=accounts)
    return total
