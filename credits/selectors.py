"""Reads for credits: balances (O(1): the cached ledger balance), the ledger, packs."""

import uuid

from django.db.models import QuerySet, Sum
from django.utils import timezone

from config.errors import NotFound
from payments.identity.models import Customer, Merchant
from wallets.models import CREDITS_UNIT, Account, Entry

from .models import CreditPack, Grant


def credit_account_get(*, customer: Customer) -> Account | None:
    return Account.objects.filter(
        kind=Account.Kind.CREDITS, currency=CREDITS_UNIT, customer=customer, merchant_id=customer.merchant_id, name=""
    ).first()


def credits_balance(*, customer: Customer) -> int:
    """The customer's spendable credits: the account's cached balance, less grants that
    expired but whose expiry the periodic task has not posted yet (an index range that is
    empty almost always), so expired credits stop counting on time."""
    account = credit_account_get(customer=customer)
    if account is None:
        return 0
    expired = (
        Grant.objects.filter(account=account, remaining__gt=0, expires_at__lte=timezone.now()).aggregate(
            n=Sum("remaining")
        )["n"]
        or 0
    )
    return account.balance - expired


def credits_ledger(*, customer: Customer) -> QuerySet[Entry]:
    """Every movement of the customer's credits, newest first (index on (account, -id))."""
    account = credit_account_get(customer=customer)
    if account is None:
        return Entry.objects.none()
    return Entry.objects.filter(account=account).select_related("transfer").order_by("-id")


def pack_get(*, merchant: Merchant, pack: str) -> CreditPack:
    """An active pack of `merchant`, by code (or id). Raises NotFound(param="pack")."""
    packs = CreditPack.objects.filter(merchant=merchant, active=True)
    found = packs.filter(code=pack).first()
    if found is None:
        try:
            found = packs.filter(pk=uuid.UUID(str(pack))).first()
        except ValueError:
            found = None
    if found is None:
        raise NotFound(f"No such credit pack: {pack}.", param="pack")
    return found


def pack_for_price(*, price_id: str) -> CreditPack | None:
    if not price_id:
        return None
    return CreditPack.objects.filter(stripe_price_id=price_id).select_related("merchant").first()


def credits_counters(*, merchant: Merchant) -> dict[str, int]:
    """The merchant's credits issued (net of revocations), consumed and expired, summed
    over the counter-account shards (credits.accounts.COUNTER_SHARDS)."""
    totals = {"issued": 0, "consumed": 0, "expired": 0}
    counters = {"issuance": "issued", "consumed": "consumed", "expired": "expired"}
    accounts = Account.objects.filter(merchant=merchant, customer__isnull=True, currency=CREDITS_UNIT)
    for name, balance in accounts.values_list("name", "balance"):
        counter = counters.get(name.split(".")[0])
        if counter is not None:
            totals[counter] += -balance if counter == "issued" else balance
    return totals
