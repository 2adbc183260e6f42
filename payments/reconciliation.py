"""Reconciliation: ask a payment's provider where it stands and settle the payment on
that answer alone (through the webhook-driven outcomes), for payments stuck in pending
(audit_payments, periodic: settled, or expired once too old) and for a payer's return
from the provider. Runs concurrently with itself and with webhooks.
"""

import logging
from datetime import datetime, timedelta

from django.conf import settings
from django.db import transaction
from django.db.models import Exists, OuterRef, Q
from django.utils import timezone

from payments.models import Charge, Payment
from payments.outcomes import CLOSED_STATES, payment_settle_from_provider
from payments.providers import ProviderStatus, failure_detail, get_provider
from payments.refunds import payment_record_provider_refund
from payments.transitions import Source, _provider_cancel, payment_lock, timeline_add

logger = logging.getLogger("paydesk.payments")


def _reconcile_lease() -> timedelta:
    return timedelta(minutes=5)


def payments_reconcile_claim(*, now: datetime, limit: int, payment_ids=None) -> list[Payment]:
    """Claim stuck pending payments (SKIP LOCKED + a lease), so concurrent runs split the
    work and never ask about one payment twice at once. `payment_ids` (staff asking about
    these now) skips the age threshold."""
    pending = Payment.objects.filter(status="pending").exclude(
        Exists(Charge.objects.filter(payment=OuterRef("pk")))  # a charge resolves its own payment
    )
    if payment_ids is not None:
        pending = pending.filter(pk__in=payment_ids)
    else:
        pending = pending.filter(created_at__lte=now - timedelta(seconds=settings.PAYMENT_RECONCILE_AFTER_SECONDS))
    with transaction.atomic():
        rows = list(
            pending.select_for_update(skip_locked=True)
            .filter(Q(reconcile_claimed_at__isnull=True) | Q(reconcile_claimed_at__lt=now - _reconcile_lease()))
            .order_by("created_at")[:limit]
        )
        Payment.objects.filter(pk__in=[p.pk for p in rows]).update(reconcile_claimed_at=now)
    return rows


def _reconcile_one(payment: Payment, *, now: datetime) -> str:
    found = None
    try:
        status = "pending"
        if payment.provider_payment_id:
            found = get_provider(payment.provider).retrieve_outcome(payment=payment)
            status = found.status
    except Exception as exc:  # the provider's trouble: judge by age alone
        logger.warning(
            "reconciliation could not reach the provider",
            extra={"payment": str(payment.pk), "detail": failure_detail(exc)[:2000]},
        )
        status = "unknown"
    if status in ("pending", "unknown") and payment.created_at <= now - timedelta(
        seconds=settings.PAYMENT_EXPIRE_AFTER_SECONDS
    ):
        result, _ = payment_settle_from_provider(
            payment_id=payment.pk,
            outcome="expired",
            amount=None,
            currency=None,
            source=Source.RECONCILIATION,
            data={"provider_status": status},
            reason="expired while pending",
        )
        if result == "expired":
            _provider_cancel(payment, source=Source.RECONCILIATION)
        return result
    if found is None or found.status not in SETTLED_OUTCOMES:
        return "still_pending"
    return _settle_found(payment, found, source=Source.RECONCILIATION, data={"provider_status": status})


SETTLED_OUTCOMES = ("succeeded", "failed", "canceled", "expired")


def _settle_found(payment: Payment, found: ProviderStatus, *, source: str, data: dict) -> str:
    """Settle the payment on what its provider's status API said (payment_settle_from_provider:
    a collected amount that is not the payment's settles nothing and is flagged). Money the
    provider says it collected and then refunded at its end is booked, then its refund
    recorded (in full), or flagged for staff (partly: the provider does not say how much)."""
    result, flagged = payment_settle_from_provider(
        payment_id=payment.pk,
        outcome=found.status,
        amount=found.amount,
        currency=found.currency,
        source=source,
        data={**data, **found.data},
        # A failure always says why: the provider's own reason, or what it reported.
        reason=found.reason
        or ("" if found.status == "succeeded" else f"the provider reports the payment {found.status}"),
    )
    if found.status != "succeeded" or not found.refunded or result == "mismatch":
        return result
    if found.refunded == "full":
        payment_record_provider_refund(
            payment_id=payment.pk,
            total_refunded=payment.amount,
            provider_refund_id="",
            source=source,
            data={**data, **found.data},
        )
    else:
        with transaction.atomic():
            locked = payment_lock(payment.pk)
            if not locked.timeline.filter(type="provider.refund_unknown_amount").exists():
                timeline_add(
                    payment=locked,
                    type="provider.refund_unknown_amount",
                    source=source,
                    flagged=True,
                    data={**data, **found.data, "note": "the provider refunded part of it; it does not say how much"},
                )
                logger.error(
                    "provider reports a partial refund Paydesk did not make", extra={"payment": str(payment.pk)}
                )
    return result


def payment_check_with_provider(*, payment_id, data: dict) -> str:
    """Ask the payment's provider where it stands, as reconciliation does, and settle it
    on that answer alone. For a payer's return to Paydesk from the provider (eSewa's
    success page, Khalti's return): the return only says when to ask.

    Asks about a pending payment, and about a closed one (failed, canceled, expired),
    since the payer may have paid it anyway: that money is booked and refunded or flagged
    (payment_settle_from_provider). No lock is held while asking. Safe to run repeatedly
    and alongside reconciliation. Returns what happened: a settled outcome, "duplicate",
    "still_pending", "no_change", "mismatch", "not_checked" (nothing to ask), or "unknown"
    (the provider could not be asked; reconciliation will).
    """
    payment = Payment.objects.get(pk=payment_id)
    if payment.status not in ("pending", *CLOSED_STATES) or not payment.provider_payment_id:
        return "not_checked"
    try:
        found = get_provider(payment.provider).retrieve_outcome(payment=payment)
    except Exception as exc:
        logger.warning(
            "could not ask the provider about a returning payer's payment",
            extra={"payment": str(payment.pk), "detail": failure_detail(exc)[:2000]},
        )
        return "unknown"
    if found.status not in SETTLED_OUTCOMES:
        return "still_pending"
    if payment.status != "pending" and found.status != "succeeded":
        return "no_change"  # closed here and not paid there: nothing to add
    return _settle_found(payment, found, source=Source.RECONCILIATION, data={**data, "provider_status": found.status})


def payments_reconcile(*, now: datetime | None = None, limit: int = 500, payment_ids=None) -> dict:
    """Ask providers about payments pending longer than PAYMENT_RECONCILE_AFTER_SECONDS and
    settle them (succeeded / failed / canceled), or expire those pending longer than
    PAYMENT_EXPIRE_AFTER_SECONDS. Safe to run repeatedly and concurrently."""
    now = now or timezone.now()
    counts: dict[str, int] = {}
    for payment in payments_reconcile_claim(now=now, limit=limit, payment_ids=payment_ids):
        try:
            result = _reconcile_one(payment, now=now)
        except Exception:  # one payment's trouble must not stop the run
            logger.exception("reconciliation failed for a payment", extra={"payment": str(payment.pk)})
            result = "error"
        finally:
            Payment.objects.filter(pk=payment.pk).update(reconcile_claimed_at=None)
        counts[result] = counts.get(result, 0) + 1
    return counts
