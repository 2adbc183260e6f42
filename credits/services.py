"""Writes for credits: grants, debits, revocations, expiry, all on the ledger, one module
each (grants.py, debits.py, revocations.py, expiry.py) on the accounts of accounts.py,
which also says how the accounts are sharded and the lock order every write keeps.
Re-exported here, so callers import every credits write from credits.services; those
modules never import this one.
"""

import logging
from datetime import datetime, timedelta

from django.db import IntegrityError, transaction
from django.db.models import Sum
from django.utils import timezone

from config.errors import InsufficientCredits, InsufficientFunds, InvalidRequest
from payments.identity.models import Customer, Merchant
from wallets.models import CREDITS_UNIT, Account, Transfer
from wallets.services import transfer_create

from .accounts import (
    CONSUMED,
    COUNTER_SHARDS,
    EXPIRED,
    ISSUANCE,
    MAX_UNITS,
    MERCHANT_ACCOUNTS,
    _accounts,
    _check_units,
    _consume,
    _emit,
    _lock,
    counter_account_name,
    counter_shard,
    credit_account_get_or_create,
    credit_counter_accounts,
)
from .expiry import _expire_due, credits_expire
from .models import CreditPack, Debit, Grant, Revocation

logger = logging.getLogger("paydesk.credits")

__all__ = [
    # .accounts
    "CONSUMED",
    "COUNTER_SHARDS",
    "EXPIRED",
    "ISSUANCE",
    "MAX_UNITS",
    "MERCHANT_ACCOUNTS",
    "counter_account_name",
    "counter_shard",
    "credit_account_get_or_create",
    "credit_counter_accounts",
    # .expiry
    "credits_expire",
    # defined here
    "credits_grant",
    "credits_debit",
    "credits_revoke",
    "credits_revoke_refunded",
]


# --- Grants ----------------------------------------------------------------------------


def credits_grant(
    *,
    customer: Customer,
    units: int,
    source: str,
    reason: str = "",
    pack: CreditPack | None = None,
    expires_at: datetime | None = None,
    stripe_event_id: str | None = None,
    stripe_line: str = "",
    stripe_object_id: str = "",
    stripe_checkout_session: str | None = None,
    stripe_payment_intent: str = "",
    stripe_invoice: str = "",
    created_by=None,
) -> tuple[Grant, bool]:
    """Add `units` to the customer's credit account, from the merchant's issuance
    account, and emit `credits.granted`. Returns (grant, created).

    Locks the customer's credit account, then the transfer's accounts in pk order.
    Idempotent on (stripe_event_id, stripe_line): a repeat (or a concurrent duplicate,
    decided by the partial unique constraint) returns the first grant and moves nothing.
    Once per Checkout Session (stripe_checkout_session) likewise, whatever the event id:
    checked under the account lock, and decided by its own unique constraint when two
    events for one session run under different locks.
    Once per Stripe invoice too: a checkout session that made an invoice is followed by
    that invoice's invoice.paid (another event id); whichever comes second, checked under
    the account lock, returns the first grant instead of granting again.
    Manual grants (no event id) are not deduplicated here: the API's Idempotency-Key is.
    Raises InvalidRequest (units not a positive integer).
    """
    _check_units(units)
    if expires_at is None and pack is not None and pack.expires_in_days:
        expires_at = timezone.now() + timedelta(days=pack.expires_in_days)
    account, accounts = _accounts(customer)
    with transaction.atomic():
        if stripe_event_id is not None:
            existing = Grant.objects.filter(stripe_event_id=stripe_event_id, stripe_line=stripe_line).first()
            if existing is not None:
                return existing, False
        locked = _lock(account)
        if stripe_event_id is not None:  # a concurrent delivery committed while we waited
            existing = Grant.objects.filter(stripe_event_id=stripe_event_id, stripe_line=stripe_line).first()
            if existing is not None:
                return existing, False
        if stripe_checkout_session:
            existing = Grant.objects.filter(stripe_checkout_session=stripe_checkout_session).first()
            if existing is not None:
                return existing, False
        if stripe_invoice:
            existing = (
                Grant.objects.filter(customer=customer, stripe_invoice=stripe_invoice)
                .exclude(stripe_event_id=stripe_event_id)
                .first()
            )
            if existing is not None:
                return existing, False
        try:
            with transaction.atomic():
                grant = Grant.objects.create(
                    merchant_id=customer.merchant_id,
                    customer=customer,
                    account=locked,
                    units=units,
                    remaining=units,
                    source=source,
                    pack=pack,
                    reason=reason,
                    expires_at=expires_at,
                    stripe_event_id=stripe_event_id,
                    stripe_line=stripe_line,
                    stripe_object_id=stripe_object_id,
                    stripe_checkout_session=stripe_checkout_session or None,
                    stripe_payment_intent=stripe_payment_intent,
                    stripe_invoice=stripe_invoice,
                    created_by=created_by,
                )
        except IntegrityError:  # a concurrent duplicate committed first: one of the two constraints
            existing = Grant.objects.filter(stripe_event_id=stripe_event_id, stripe_line=stripe_line).first()
            if existing is None and stripe_checkout_session:
                existing = Grant.objects.filter(stripe_checkout_session=stripe_checkout_session).first()
            if existing is None:
                raise
            return existing, False
        grant.transfer = transfer_create(
            legs=[(accounts[ISSUANCE], -units), (locked, units)],
            currency=CREDITS_UNIT,
            kind=Transfer.Kind.ADJUSTMENT if created_by is not None else Transfer.Kind.CREDIT,
            merchant=Merchant(pk=customer.merchant_id),
            reference=f"credits:grant:{grant.pk}",
            description=reason,
            created_by=created_by,
        )
        grant.save(update_fields=["transfer"])
        _emit(
            merchant_id=customer.merchant_id,
            type="credits.granted",
            data={
                "grant": str(grant.pk),
                "customer": str(customer.pk),
                "units": units,
                "balance": locked.balance,
                "source": source,
                "pack": pack.code if pack else None,
                "expires_at": expires_at,
                "stripe_event": stripe_event_id,
                "reason": reason,
            },
        )
    return grant, True


# --- Debits ----------------------------------------------------------------------------


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
        _expire_due(locked, now=timezone.now(), accounts=accounts)
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
        _consume(locked, units)
        debit = Debit.objects.create(
            merchant_id=customer.merchant_id,
            customer=customer,
            account=locked,
            units=units,
            reason=reason,
            ref=ref,
            transfer=transfer,
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


# --- Revocations -----------------------------------------------------------------------


def _revoke_locked(
    *,
    locked: Account,
    customer: Customer,
    accounts: dict[str, Account],
    requested: int,
    reason: str,
    grant: Grant | None,
    stripe_event_id: str | None,
    created_by,
    cap: int | None = None,
) -> Revocation:
    revoked = min(requested, max(locked.balance, 0))
    if cap is not None:
        revoked = min(revoked, cap)
    transfer = None
    if revoked:
        transfer = transfer_create(
            legs=[(locked, -revoked), (accounts[ISSUANCE], revoked)],
            currency=CREDITS_UNIT,
            kind=Transfer.Kind.ADJUSTMENT,
            merchant=Merchant(pk=customer.merchant_id),
            reference=f"credits:revoke:{grant.pk}" if grant else "credits:revoke",
            description=reason,
            created_by=created_by,
        )
        _consume(locked, revoked, first=grant)
    revocation = Revocation.objects.create(
        merchant_id=customer.merchant_id,
        customer=customer,
        account=locked,
        grant=grant,
        requested=requested,
        revoked=revoked,
        shortfall=requested - revoked,
        reason=reason,
        stripe_event_id=stripe_event_id,
        transfer=transfer,
        created_by=created_by,
    )
    if revocation.shortfall:
        logger.warning(
            "credits revoked short: already spent",
            extra={"customer": str(customer.pk), "requested": requested, "revoked": revoked},
        )
    _emit(
        merchant_id=customer.merchant_id,
        type="credits.revoked",
        data={
            "revocation": str(revocation.pk),
            "customer": str(customer.pk),
            "grant": str(grant.pk) if grant else None,
            "requested": requested,
            "units": revoked,
            "shortfall": revocation.shortfall,
            "balance": locked.balance,
            "reason": reason,
            "stripe_event": stripe_event_id,
        },
    )
    return revocation


def credits_revoke(
    *, customer: Customer, units: int, reason: str, grant: Grant | None = None, created_by=None
) -> Revocation:
    """Take back up to `units` credits (staff or merchant correction), never below zero:
    what is no longer there is recorded as the shortfall. With `grant`, that grant's
    remaining units go first. Emits `credits.revoked`.

    Locks the customer's credit account (after posting its due expiries). Not idempotent.
    Raises InvalidRequest (no reason, units not positive, grant of another customer).
    """
    _check_units(units)
    if not reason or not reason.strip():
        raise InvalidRequest("A reason is required to revoke credits.", param="reason")
    if grant is not None and grant.customer_id != customer.pk:
        raise InvalidRequest("That grant belongs to another customer.", param="grant")
    account, accounts = _accounts(customer)
    with transaction.atomic():
        locked = _lock(account)
        _expire_due(locked, now=timezone.now(), accounts=accounts)
        return _revoke_locked(
            locked=locked,
            customer=customer,
            accounts=accounts,
            requested=units,
            reason=reason.strip(),
            grant=grant,
            stripe_event_id=None,
            created_by=created_by,
        )


def credits_revoke_refunded(*, grant: Grant, refunded_units: int, stripe_event_id: str) -> Revocation | None:
    """A refund of the purchase behind `grant`: bring the units revoked for refunds of it
    up to `refunded_units` (Stripe's refund totals are cumulative, so a repeated or
    late, smaller total revokes nothing more), but never more than what is left of that
    grant (its units less what was spent, expired or revoked of it): other grants are
    not the refunded purchase. What is no longer there is recorded as the shortfall.

    Locks the customer's credit account; idempotent on (stripe_event_id, grant) and on
    the cumulative total. Returns the revocation, or None when nothing more is due.
    """
    customer = grant.customer
    account, accounts = _accounts(customer)
    refunded_units = min(refunded_units, grant.units)
    with transaction.atomic():
        locked = _lock(account)
        existing = Revocation.objects.filter(stripe_event_id=stripe_event_id, grant=grant).first()
        if existing is not None:
            return existing
        already = (
            Revocation.objects.filter(grant=grant, stripe_event_id__isnull=False).aggregate(n=Sum("requested"))["n"]
            or 0
        )
        if refunded_units - already <= 0:
            return None
        _expire_due(locked, now=timezone.now(), accounts=accounts)
        left = Grant.objects.values_list("remaining", flat=True).get(pk=grant.pk)
        return _revoke_locked(
            locked=locked,
            customer=customer,
            accounts=accounts,
            requested=refunded_units - already,
            reason=f"Stripe refund ({stripe_event_id})",
            grant=grant,
            stripe_event_id=stripe_event_id,
            created_by=None,
            cap=left,
        )
