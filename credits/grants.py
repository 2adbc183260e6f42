"""Credit grants: units added to a customer's credit account from its merchant's issuance
account, by a Stripe purchase (exactly once per Stripe event, Checkout Session and
invoice) or by staff and merchants.
"""

from datetime import datetime, timedelta

from django.db import IntegrityError, transaction
from django.utils import timezone

from payments.identity.models import Customer, Merchant
from wallets.models import CREDITS_UNIT, Transfer
from wallets.services import transfer_create

from .accounts import ISSUANCE, _accounts, _check_units, _emit, _lock
from .models import CreditPack, Grant


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
