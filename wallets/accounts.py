"""Ledger accounts: opened on first use, one per (kind, owner, currency, name).

Accounts are opened before the transaction that locks them: creating a shared account
inside a transaction that then waits for a lock could deadlock with a writer holding that
lock and waiting on the uncommitted insert. wallet_create opens its merchant's accounts.
"""

from django.db import IntegrityError, transaction
from django.db.models import Sum

from config.errors import Conflict
from payments.identity.models import Customer, Merchant

from .ledger import BALANCE, balance_key, shard_names
from .models import Account


def account_open(*, kind: str, currency: str, merchant_id, customer_id, name: str) -> Account:
    """The account of this kind for this owner, currency and name, created if missing.
    External funding and provider clearing accounts (where money enters and leaves the
    system: a card payment collected by a provider is a receivable) may go negative;
    every other kind may not. Safe under concurrency (unique constraint)."""
    lookup = {"kind": kind, "currency": currency, "merchant_id": merchant_id, "customer_id": customer_id, "name": name}
    account = Account.objects.filter(**lookup).first()
    if account is not None:
        return account
    allow_negative = kind in (Account.Kind.EXTERNAL_FUNDING, Account.Kind.PROVIDER_CLEARING)
    try:
        with transaction.atomic():
            return Account.objects.create(**lookup, allow_negative=allow_negative)
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
    """account_open, given the owners as rows."""
    return account_open(
        kind=kind,
        currency=currency,
        merchant_id=merchant.pk if merchant is not None else None,
        customer_id=customer.pk if customer is not None else None,
        name=name,
    )


def merchant_funding_account(*, merchant: Merchant, currency: str) -> Account:
    return account_get_or_create(kind=Account.Kind.EXTERNAL_FUNDING, merchant=merchant, currency=currency)


def merchant_balance_account(*, merchant: Merchant, currency: str, customer_id=None) -> Account:
    """The merchant-balance shard that money from `customer_id` lands on (without one,
    shard 0, the merchant's first balance account). The merchant's balance is the sum of
    its shards: merchant_balance."""
    key = balance_key(merchant_id=merchant.pk, currency=currency, owner_id=customer_id)
    return account_open(kind=BALANCE, currency=currency, merchant_id=merchant.pk, customer_id=None, name=key.name)


def merchant_balance(*, merchant: Merchant, currency: str) -> int:
    """The merchant's balance in `currency`: the sum of its shards."""
    return (
        Account.objects.filter(
            kind=BALANCE, merchant_id=merchant.pk, currency=currency, customer__isnull=True, name__in=shard_names()
        ).aggregate(total=Sum("balance"))["total"]
        or 0
    )


def wallet_create(*, customer: Customer, currency: str) -> Account:
    """Open the customer's wallet in `currency` (lowercase ISO code).

    Also opens the merchant's funding account and the balance shard of this customer in
    that currency if needed (see the module docstring).
    Raises Conflict if the customer already has a wallet in that currency (the unique
    constraint decides between concurrent creates).
    """
    currency = currency.lower()
    merchant = Merchant(pk=customer.merchant_id)
    merchant_funding_account(merchant=merchant, currency=currency)
    merchant_balance_account(merchant=merchant, currency=currency, customer_id=customer.pk)
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
