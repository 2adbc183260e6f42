"""Credit revocations: units taken back from a customer's credit account to its merchant's
issuance account, by staff or merchants with a reason or for a refunded Stripe purchase,
never below zero: what was spent already is recorded as the shortfall.
"""

import logging

from django.db import transaction
from django.db.models import Sum
from django.utils import timezone

from config.errors import InvalidRequest
from payments.identity.models import Customer, Merchant
from wallets.models import CREDITS_UNIT, Account, Transfer
from wallets.services import transfer_create

from .accounts import ISSUANCE, _accounts, _check_units, _consume, _emit, _lock
from .expiry import _expire_due
from .models import Grant, Revocation

logger = logging.getLogger("paydesk.credits")


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
