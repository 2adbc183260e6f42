"""Writes for payments: create and cancel here, and every other payments write
re-exported from its own module, so callers import them all from payments.services:
transitions.py (the state machine and timeline), outcomes.py (webhook-driven outcomes),
refunds.py, reconciliation.py. Those modules never import this one.

Locking rule (STYLE.md §9): never hold a row lock across a provider call. A service
commits its intent, calls the provider with a stored idempotency key outside any
transaction, and records the outcome in a second short transaction.
"""

import logging

from django.db import IntegrityError, transaction

from config import rows
from config.errors import Conflict, IllegalTransition, ProviderError
from config.faults import fault_point
from config.integrity import violates
from payments.identity.services import subscription_consume_token
from payments.models import Payment
from payments.outcomes import (
    ATTEMPT_EVENTS,
    CLOSED_STATES,
    payment_attempt_failed,
    payment_collected_after_close,
    payment_flag_provider_data,
    payment_settle_from_provider,
)
from payments.ownership import payment_charge_backed
from payments.providers import (
    ProviderFailure,
    ProviderUnavailable,
    failure_detail,
    get_provider,
    resolve_provider_name,
)
from payments.reconciliation import (
    SETTLED_OUTCOMES,
    payment_check_with_provider,
    payments_reconcile,
    payments_reconcile_claim,
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
    # payments.reconciliation
    "SETTLED_OUTCOMES",
    "payment_check_with_provider",
    "payments_reconcile",
    "payments_reconcile_claim",
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
            payment = Payment(
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
            rows.insert(payment)  # save()'s INSERT, its SQL built once (config/rows.py)
            timeline_add(
                payment=payment,
                type="payment.created",
                source=Source.API,
                to_status="pending",
                data={"amount": amount, "currency": currency, "provider": provider_name},
            )
    except IntegrityError as exc:
        if violates(exc, Payment, "payment_one_pending_per_order"):
            raise Conflict(f"Order {order_id!r} already has a pending payment.", param="order_id")
        if idempotency_key and violates(exc, Payment, "payment_idempotency_key_unique_per_merchant"):
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
        answer = {
            "provider_payment_id": created.provider_payment_id,
            "payment_url": created.payment_url,
            "client_secret": created.client_secret,
        }
        with transaction.atomic():
            rows.update(Payment, {"id": payment.pk}, answer)
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
    # The row as it now is, without reading it back: the UPDATE changed these fields only
    # (an update() leaves updated_at as the INSERT set it).
    for attname, value in answer.items():
        setattr(payment, attname, value)
    return payment


def payment_cancel(*, payment: Payment, source: str = Source.API, idempotency_key: str | None = None) -> Payment:
    """Cancel a pending payment. Anything else, or a charge's payment (it settles with its
    charge), raises IllegalTransition (409).

    Resumable on `idempotency_key`: it is recorded on the cancel's timeline event, and a
    retry of the request that canceled the payment asks the provider again (a crash may
    have come before it did) and answers as the first did, where any other cancel of a
    canceled payment is a 409."""
    if payment_charge_backed(payment):
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
