"""Writes for payments: create, the state machine, cancel, refunds, reconciliation.

Locking rule (STYLE.md §9): never hold a row lock across a provider call. A service
commits its intent, calls the provider with a stored idempotency key outside any
transaction, and records the outcome in a second short transaction.
"""

import logging
from datetime import datetime, timedelta

from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import Exists, OuterRef, Q
from django.utils import timezone

from config.errors import Conflict, IllegalTransition, ProviderError
from config.faults import fault_point
from payments.identity.services import subscription_consume_token
from payments.models import Charge, Payment
from payments.outcomes import (
    ATTEMPT_EVENTS,
    CLOSED_STATES,
    payment_attempt_failed,
    payment_collected_after_close,
    payment_flag_provider_data,
    payment_settle_from_provider,
)
from payments.providers import (
    ProviderFailure,
    ProviderStatus,
    ProviderUnavailable,
    failure_detail,
    get_provider,
    resolve_provider_name,
)
from payments.refunds import (
    REFUND_STATES,
    payment_record_provider_refund,
    payment_refund,
    refund_send,
    refunds_resolve_pending,
)
from payments.transitions import (
    INTERNAL_DETAIL,
    OUTBOUND,
    Source,
    _provider_cancel,
    payment_data,
    payment_lock,
    payment_transition,
    timeline_add,
)

logger = logging.getLogger("paydesk.payments")

__all__ = [
    # payments.outcomes
    "ATTEMPT_EVENTS",
    "CLOSED_STATES",
    "payment_attempt_failed",
    "payment_collected_after_close",
    "payment_flag_provider_data",
    "payment_settle_from_provider",
    # payments.refunds
    "REFUND_STATES",
    "payment_record_provider_refund",
    "payment_refund",
    "refund_send",
    "refunds_resolve_pending",
    # payments.transitions
    "INTERNAL_DETAIL",
    "OUTBOUND",
    "Source",
    "payment_data",
    "payment_lock",
    "payment_transition",
    "timeline_add",
    # defined here
    "payment_create",
    "payment_cancel",
    "payments_reconcile_claim",
    "SETTLED_OUTCOMES",
    "payment_check_with_provider",
    "payments_reconcile",
]


def payment_create(
    *,
    merchant,
    order_id: str,
    amount: int,
    currency: str,
    customer=None,
    provider: str | None = None,
    description: str = "",
    metadata: dict | None = None,
    return_url: str = "",
    split_instructions=None,
    idempotency_key: str = "",
) -> Payment:
    """Create a pending payment and ask its provider for a way to pay it.

    One transaction takes a quota token (QuotaExceeded, 402) and inserts the payment; the
    partial unique constraint refuses a second pending payment for the order (Conflict,
    409) and the token goes back with the rollback. Then, outside any lock, the provider
    is called with an idempotency key derived from the payment; if it fails, the payment
    becomes `failed` with the reason and ProviderError (502) is raised.

    Resumable on `idempotency_key` (unique per merchant, config/api/idempotency.py): a
    retry finds the payment that carries it and takes it on from where it stopped (the
    provider asked again with the same derived key if its answer was never recorded); no
    second payment, no second quota token.
    """
    if idempotency_key:
        existing = Payment.objects.filter(merchant=merchant, idempotency_key=idempotency_key).first()
        if existing is not None:
            return _payment_resume(existing, order_id=order_id, amount=amount, currency=currency)
    provider_name = resolve_provider_name(merchant=merchant, requested=provider)
    get_provider(provider_name).validate_payment(amount=amount, currency=currency)
    try:
        with transaction.atomic():
            subscription_consume_token(merchant=merchant)
            payment = Payment.objects.create(
                merchant=merchant,
                customer=customer,
                order_id=order_id,
                amount=amount,
                currency=currency,
                provider=provider_name,
                description=description,
                metadata=metadata or {},
                return_url=return_url,
                split_instructions=split_instructions or [],
                idempotency_key=idempotency_key,
            )
            timeline_add(
                payment=payment,
                type="payment.created",
                source=Source.API,
                to_status="pending",
                data={"amount": amount, "currency": currency, "provider": provider_name},
            )
    except IntegrityError as exc:
        if "payment_one_pending_per_order" in str(exc):
            raise Conflict(f"Order {order_id!r} already has a pending payment.", param="order_id")
        if idempotency_key and "payment_idempotency_key_unique_per_merchant" in str(exc):
            existing = Payment.objects.get(merchant=merchant, idempotency_key=idempotency_key)
            return _payment_resume(existing, order_id=order_id, amount=amount, currency=currency)
        raise
    fault_point("intent_committed")
    return _payment_at_provider(payment)


def _payment_resume(payment: Payment, *, order_id: str, amount: int, currency: str) -> Payment:
    """A retry of the create that made `payment`: the same answer, nothing made twice."""
    if (payment.order_id, payment.amount, payment.currency) != (order_id, amount, currency.lower()):
        raise Conflict("This Idempotency-Key was already used for a different payment.", param="Idempotency-Key")
    if not payment.provider_payment_id:
        if payment.status == "pending":  # the provider's answer was never recorded: ask again
            return _payment_at_provider(payment)
        if payment.status == "failed":  # the provider failed the create: the same 502
            raise ProviderError(f"The payment provider failed: {payment.failure_reason}")
    return payment


def _payment_at_provider(payment: Payment) -> Payment:
    """Ask the payment's provider for a way to pay it, with the key `pay-<id>` (so asking
    again after a crash finds the same provider payment), and record the answer."""
    provider_name = payment.provider
    try:
        # Any failure at all (declined, unreachable, timeout, a bug in a plugin) leaves the
        # payment failed with the reason rather than pending forever.
        created = get_provider(provider_name).create_payment(payment=payment, idempotency_key=f"pay-{payment.pk}")
        fault_point("provider_called")
        with transaction.atomic():
            Payment.objects.filter(pk=payment.pk).update(
                provider_payment_id=created.provider_payment_id,
                payment_url=created.payment_url,
                client_secret=created.client_secret,
            )
            timeline_add(
                payment=payment,
                type="provider.payment_created",
                source=Source.API,
                data={"provider_payment_id": created.provider_payment_id},
            )
    except Exception as exc:
        if isinstance(exc, IntegrityError):
            exc = ProviderUnavailable(
                "The payment provider answered with a payment id already used by another payment.",
                detail=f"returned id {created.provider_payment_id!r}, already used by another payment",
            )
        # Merchants read the reason (failure_reason, the 502's message, payment.failed);
        # what actually happened (hosts, ports, the provider's text, a plugin's bug) is for
        # the log and for staff, in the timeline event's internal detail.
        if isinstance(exc, ProviderFailure):
            message = exc.message
        else:
            message = "The payment provider failed unexpectedly."
        reason = f"{provider_name}: {message}"[:1000]
        detail = failure_detail(exc)[:2000]
        logger.warning(
            "provider failed to create a payment",
            extra={"payment": str(payment.pk), "reason": reason, "detail": detail},
            exc_info=not isinstance(exc, ProviderFailure),
        )
        payment_transition(
            payment_id=payment.pk,
            to="failed",
            source=Source.API,
            reason=reason,
            data={"stage": "provider_create", "reason": reason, INTERNAL_DETAIL: detail},
        )
        raise ProviderError(f"The payment provider failed: {reason}")
    payment.refresh_from_db()
    return payment


def _charge_backed(payment: Payment) -> bool:
    return Charge.objects.filter(payment_id=payment.pk).exists()


def payment_cancel(*, payment: Payment, source: str = Source.API, idempotency_key: str | None = None) -> Payment:
    """Cancel a pending payment. Anything else, or a charge's payment (it settles with its
    charge), raises IllegalTransition (409).

    Resumable on `idempotency_key`: it is recorded on the cancel's timeline event, and a
    retry of the request that canceled the payment asks the provider again (a crash may
    have come before it did) and answers as the first did, where any other cancel of a
    canceled payment is a 409."""
    if _charge_backed(payment):
        raise IllegalTransition("This payment belongs to a charge and settles with it; it cannot be canceled.")
    if idempotency_key and payment.status == "canceled":
        if payment.timeline.filter(type="payment.canceled", data__idempotency_key=idempotency_key).exists():
            _provider_cancel(payment, source=source)
            return payment
    data = {"idempotency_key": idempotency_key} if idempotency_key else None
    payment = payment_transition(payment_id=payment.pk, to="canceled", source=source, data=data)
    fault_point("intent_committed")
    _provider_cancel(payment, source=source)
    return payment


# --- Reconciliation -----------------------------------------------------------------------


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
