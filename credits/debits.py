"""Credit debits: units spent from a customer's credit account into its merchant's
consumed account, oldest grants first, never below zero (InsufficientCredits).
"""

from django.db import transaction
from django.utils import timezone

from config import rows
from config.errors import InsufficientCredits, InsufficientFunds
from payments.identity.models import Customer, Merchant
from wallets.models import CREDITS_UNIT, Transfer
from wallets.services import transfer_create

from .accounts import CONSUMED, _accounts, _check_units, _consume, _emit, _live_grants_all, _lock
from .expiry import _expire_due
from .models import Debit


def credits_debit(*, customer: Customer, units: int, reason: str = "", ref: str = "") -> tuple[Debit, int]:
    """Spend `units` of the customer's credits (into the merchant's consumed account),
    oldest grants first, and emit `credits.debited`. Returns (debit, balance).

    Locks the customer's credit account, posts its due expiries (expired credits cannot
    be spent), then debits. Not idempotent by itself: the API's Idempotency-Key is.
    Raises InsufficientCredits (balance < units; nothing changes), InvalidRequest.
    """
    _check_units(units, param="units")
    account, accounts = _accounts(customer)
    with transaction.atomic():
        locked = _lock(account)
        live = _live_grants_all(locked)  # one read for the expiry and the debit, almost always
        _expire_due(locked, now=timezone.now(), accounts=accounts, live=live)
        if locked.balance < units:
            raise InsufficientCredits(f"{locked.balance} credits left, {units} needed.", param="units")
        try:
            transfer = transfer_create(
                legs=[(locked, -units), (accounts[CONSUMED], units)],
                currency=CREDITS_UNIT,
                kind=Transfer.Kind.DEBIT,
                merchant=Merchant(pk=customer.merchant_id),
                reference=f"credits:debit:{ref}"[:255] if ref else "credits:debit",
                description=reason,
            )
        except InsufficientFunds as exc:  # the ledger's own check, should ours ever be bypassed
            raise InsufficientCredits(exc.message, param="units")
        _consume(locked, units, live=live)
        debit = rows.insert(
            Debit(
                merchant_id=customer.merchant_id,
                customer=customer,
                account=locked,
                units=units,
                reason=reason,
                ref=ref,
                transfer=transfer,
            )
        )
        _emit(
            merchant_id=customer.merchant_id,
            type="credits.debited",
            data={
                "debit": str(debit.pk),
                "customer": str(customer.pk),
                "units": units,
                "balance": locked.balance,
                "reason": reason,
                "ref": ref,
            },
        )
    return debit, locked.balance
