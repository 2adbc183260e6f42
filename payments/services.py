"""Writes for payments: create, the state machine, cancel, refunds, reconciliation.

Locking rule (STYLE.md §9): never hold a row lock across a provider call. A service
commits its intent, calls the provider with a stored idempotency key outside any
transaction, and records the outcome in a second short transaction.
"""

import logging
from datetime import datetime, timedelta

from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import F, Q, Sum
from django.utils import timezone

from config.errors import Conflict, IllegalTransition, InvalidRequest, ProviderError
from payments.identity.services import subscription_consume_token
from payments.models import TRANSITIONS, Payment, PaymentEvent, Refund
from payments.providers import ProviderDeclined, ProviderUnavailable, get_provider, resolve_provider_name
from wallets.models import Account
from wallets.services import account_get_or_create, merchant_balance_account, transfer_create, transfer_reverse
from webhooks.services import event_emit

logger = logging.getLogger("paydesk.payments")

Source = PaymentEvent.Source
# Outbound event for each state a payment can enter.
OUTBOUND = {
    "succeeded": "payment.succeeded",
    "failed": "payment.failed",
    "canceled": "payment.canceled",
    "expired": "payment.canceled",
    "partially_refunded": "payment.refunded",
    "refunded": "payment.refunded",
}


def payment_data(payment: Payment) -> dict:
    """What outbound events say about a payment."""
    return {
        "id": str(payment.pk),
        "order_id": payment.order_id,
        "status": payment.status,
        "amount": payment.amount,
        "amount_refunded": payment.amount_refunded,
        "currency": payment.currency,
        "provider": payment.provider,
        "provider_payment_id": payment.provider_payment_id,
        "customer": str(payment.customer_id) if payment.customer_id else None,
        "failure_reason": payment.failure_reason or None,
        "metadata": payment.metadata,
    }


def payment_lock(payment_id) -> Payment:
    # NO KEY UPDATE: excludes other writers of the row but not the KEY SHARE lock that
    # inserting a row referencing it (a timeline event, a charge) takes elsewhere.
    return Payment.objects.select_for_update(no_key=True).get(pk=payment_id)


def timeline_add(
    *,
    payment: Payment,
    type: str,
    source: str,
    data: dict | None = None,
    from_status: str = "",
    to_status: str = "",
    flagged: bool = False,
) -> PaymentEvent:
    return PaymentEvent.objects.create(
        payment=payment,
        type=type,
        source=source,
        data=data or {},
        from_status=from_status,
        to_status=to_status,
        flagged=flagged,
    )


@transaction.atomic
def payment_transition(*, payment_id, to: str, source: str, data: dict | None = None, reason: str = "") -> Payment:
    """Move a payment to `to`: locks the row, refuses what the state machine forbids
    (IllegalTransition, 409), writes the timeline event and the outbound event."""
    payment = payment_lock(payment_id)
    if to not in TRANSITIONS.get(payment.status, ()):
        raise IllegalTransition(f"A {payment.status} payment cannot become {to}.")
    previous = payment.status
    payment.status = to
    if reason:
        payment.failure_reason = reason
    payment.save(update_fields=["status", "failure_reason", "updated_at"])
    timeline_add(payment=payment, type=f"payment.{to}", source=source, data=data, from_status=previous, to_status=to)
    if to in OUTBOUND:
        event_emit(merchant=payment.merchant, type=OUTBOUND[to], data=payment_data(payment))
    return payment


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
    """
    provider_name = resolve_provider_name(merchant=merchant, requested=provider)
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
        raise

    try:
        # Any failure at all (declined, unreachable, timeout, a bug in a plugin) leaves the
        # payment failed with the reason rather than pending forever.
        created = get_provider(provider_name).create_payment(payment=payment, idempotency_key=f"pay-{payment.pk}")
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
            exc = ProviderUnavailable(f"returned id {created.provider_payment_id!r}, already used by another payment")
        reason = f"{provider_name}: {exc}"[:1000]
        logger.warning("provider failed to create a payment", extra={"payment": str(payment.pk), "reason": reason})
        payment_transition(
            payment_id=payment.pk, to="failed", source=Source.API, reason=reason, data={"stage": "provider_create"}
        )
        raise ProviderError(f"The payment provider failed: {reason}")
    payment.refresh_from_db()
    return payment


def payment_cancel(*, payment: Payment, source: str = Source.API) -> Payment:
    """Cancel a pending payment. Anything else: IllegalTransition (409)."""
    return payment_transition(payment_id=payment.pk, to="canceled", source=source)


# --- Webhook-driven outcomes -------------------------------------------------------------


def payment_settle_from_provider(
    *, payment_id, outcome: str, amount: int | None, currency: str | None, source: str, data: dict, reason: str = ""
) -> tuple[str, bool]:
    """A provider (webhook or reconciliation) says the payment `outcome`d
    (succeeded/failed/canceled/expired). Returns (what happened, flagged).

    - amount/currency given and not the payment's → nothing changes; a flagged timeline
      event is written and staff are alerted (logged at ERROR, flagged in admin).
    - a state the payment is already in → no-op (repeats are harmless).
    - a late failure/cancel after success → no change (never undo a success).
    - success after a failure/cancel/expiry → no change, flagged: money arrived for a
      payment we gave up on, staff must look.
    """
    with transaction.atomic():
        payment = payment_lock(payment_id)
        if (amount is not None and amount != payment.amount) or (
            currency is not None and currency.lower() != payment.currency
        ):
            timeline_add(
                payment=payment,
                type="provider.mismatch",
                source=source,
                flagged=True,
                data={
                    **data,
                    "expected": {"amount": payment.amount, "currency": payment.currency},
                    "got": {"amount": amount, "currency": currency},
                },
            )
            logger.error("provider notification does not match the payment", extra={"payment": str(payment.pk)})
            return "mismatch", True
        if payment.status == outcome:
            return "duplicate", False
        if outcome not in TRANSITIONS.get(payment.status, ()):
            flagged = outcome == "succeeded"
            timeline_add(
                payment=payment,
                type=f"provider.late_{outcome}",
                source=source,
                flagged=flagged,
                data={**data, "status_kept": payment.status},
            )
            if flagged:
                logger.error(
                    "provider reports success for a payment already closed",
                    extra={"payment": str(payment.pk), "status": payment.status},
                )
            return f"ignored_after_{payment.status}", flagged
        payment_transition(payment_id=payment.pk, to=outcome, source=source, data=data, reason=reason)
        return outcome, False


# --- Refunds ------------------------------------------------------------------------------


def payment_refund(
    *, payment: Payment, amount: int | None = None, reason: str = "", source: str = Source.API
) -> Refund:
    """Refund all or part of what is left of a succeeded payment, back where it came from.

    Under the payment's row lock: checks the amount (never more than what is left:
    InvalidRequest on `amount`), reserves it, and returns any wallet-funded part of a
    charge at once with a ledger reversal of the wallet capture. The provider-funded
    rest is refunded through the provider outside the lock (the refund's id as
    idempotency key); if that fails, its reservation is released and ProviderError raised.
    Ends partially_refunded or refunded.
    """
    with transaction.atomic():
        locked = payment_lock(payment.pk)
        if locked.status not in ("succeeded", "partially_refunded"):
            raise IllegalTransition(f"A {locked.status} payment cannot be refunded.")
        left = locked.amount - locked.amount_refunded
        amount = left if amount is None else amount
        if amount < 1 or amount > left:
            raise InvalidRequest(f"The refund must be between 1 and {left} (what is left).", param="amount")
        charge = locked.charges.filter(status="succeeded").select_related("hold").first()
        wallet_part = 0
        if charge is not None and charge.wallet_amount:
            wallet_refunded = (
                locked.refunds.exclude(status=Refund.Status.FAILED).aggregate(total=Sum("wallet_amount"))["total"] or 0
            )
            wallet_part = min(amount, charge.wallet_amount - wallet_refunded)
        provider_part = amount - wallet_part
        Payment.objects.filter(pk=locked.pk).update(amount_refunded=F("amount_refunded") + amount)
        locked.amount_refunded += amount
        refund = Refund.objects.create(
            payment=locked, amount=amount, reason=reason, wallet_amount=wallet_part, provider_amount=provider_part
        )
        timeline_add(
            payment=locked,
            type="refund.requested",
            source=source,
            data={
                "refund": str(refund.pk),
                "amount": amount,
                "wallet_amount": wallet_part,
                "provider_amount": provider_part,
                "reason": reason,
            },
        )
        if wallet_part:
            transfer_reverse(
                transfer=charge.hold.capture_transfer,
                amount=wallet_part,
                reference=f"refund:{refund.pk}",
                description="refund of the wallet part of a charge",
            )
        if charge is not None and provider_part:
            # The card part was booked from the provider's clearing account into the
            # merchant's balance: book its refund back now (a merchant who paid the money
            # out cannot refund it: InsufficientFunds, and nothing has happened).
            _book_card_refund(charge=charge, amount=provider_part, refund=refund, back=False)
        if not provider_part:
            return _refund_succeeded(payment=locked, refund=refund, provider_refund_id="", source=source)

    provider_name = charge.provider if charge is not None else locked.provider
    try:
        result = get_provider(provider_name).refund(
            payment=locked, amount=provider_part, idempotency_key=f"re-{refund.pk}"
        )
        ok = result.status in ("succeeded", "pending")
        failure = "" if ok else f"provider refund {result.status}"
    except (ProviderUnavailable, ProviderDeclined) as exc:
        result, ok, failure = None, False, str(exc)

    with transaction.atomic():
        locked = payment_lock(payment.pk)
        if ok:
            return _refund_succeeded(
                payment=locked, refund=refund, provider_refund_id=result.provider_refund_id, source=source
            )
        Payment.objects.filter(pk=locked.pk).update(amount_refunded=F("amount_refunded") - provider_part)
        if charge is not None:
            _book_card_refund(charge=charge, amount=provider_part, refund=refund, back=True)
        timeline_add(
            payment=locked,
            type="refund.failed",
            source=source,
            data={"refund": str(refund.pk), "provider_amount": provider_part, "reason": failure[:500]},
        )
        if wallet_part:  # the wallet part went back already: the refund is for that much
            Refund.objects.filter(pk=refund.pk).update(
                amount=wallet_part, provider_amount=0, failure_reason=f"provider part failed: {failure}"[:1000]
            )
            refund.refresh_from_db()
            _refund_succeeded(payment=locked, refund=refund, provider_refund_id="", source=source)
        else:
            Refund.objects.filter(pk=refund.pk).update(status=Refund.Status.FAILED, failure_reason=failure[:1000])
    raise ProviderError(f"The provider could not refund: {failure}")


def _book_card_refund(*, charge, amount: int, refund: Refund, back: bool) -> None:
    clearing = account_get_or_create(
        kind=Account.Kind.PROVIDER_CLEARING, currency=charge.currency, name=charge.provider
    )
    balance = merchant_balance_account(merchant=charge.merchant, currency=charge.currency)
    source, destination = (clearing, balance) if back else (balance, clearing)
    transfer_create(
        legs=[(source, -amount), (destination, amount)],
        currency=charge.currency,
        merchant=charge.merchant,
        reference=f"refund:{refund.pk}",
        description="card refund failed: booked back" if back else "card part of a refund",
    )


def _refund_succeeded(*, payment: Payment, refund: Refund, provider_refund_id: str, source: str) -> Refund:
    Refund.objects.filter(pk=refund.pk).update(status=Refund.Status.SUCCEEDED, provider_refund_id=provider_refund_id)
    payment.refresh_from_db(fields=["amount_refunded"])
    to = "refunded" if payment.amount_refunded >= payment.amount else "partially_refunded"
    payment_transition(
        payment_id=payment.pk, to=to, source=source, data={"refund": str(refund.pk), "amount": refund.amount}
    )
    refund.refresh_from_db()
    return refund


# --- Reconciliation -----------------------------------------------------------------------


def _reconcile_lease() -> timedelta:
    return timedelta(minutes=5)


def payments_reconcile_claim(*, now: datetime, limit: int) -> list[Payment]:
    """Claim stuck pending payments (SKIP LOCKED + a lease), so concurrent runs split the
    work and never ask about one payment twice at once."""
    cutoff = now - timedelta(seconds=settings.PAYMENT_RECONCILE_AFTER_SECONDS)
    with transaction.atomic():
        rows = list(
            Payment.objects.select_for_update(skip_locked=True)
            .filter(status="pending", created_at__lte=cutoff)
            .filter(Q(reconcile_claimed_at__isnull=True) | Q(reconcile_claimed_at__lt=now - _reconcile_lease()))
            .order_by("created_at")[:limit]
        )
        Payment.objects.filter(pk__in=[p.pk for p in rows]).update(reconcile_claimed_at=now)
    return rows


def payments_reconcile(*, now: datetime | None = None, limit: int = 500) -> dict:
    """Ask providers about payments pending longer than PAYMENT_RECONCILE_AFTER_SECONDS and
    settle them (succeeded / failed / canceled), or expire those pending longer than
    PAYMENT_EXPIRE_AFTER_SECONDS. Safe to run repeatedly and concurrently."""
    now = now or timezone.now()
    counts: dict[str, int] = {}
    for payment in payments_reconcile_claim(now=now, limit=limit):
        try:
            status = (
                get_provider(payment.provider).retrieve_status(payment=payment)
                if (payment.provider_payment_id)
                else "pending"
            )
        except Exception as exc:  # one provider's trouble must not stop the run
            logger.warning(
                "reconciliation could not reach the provider",
                extra={"payment": str(payment.pk), "error": str(exc)[:200]},
            )
            status = "unknown"
        outcome = status
        if status in ("pending", "unknown") and payment.created_at <= now - timedelta(
            seconds=settings.PAYMENT_EXPIRE_AFTER_SECONDS
        ):
            outcome = "expired"
        if outcome in ("succeeded", "failed", "canceled", "expired"):
            result, _ = payment_settle_from_provider(
                payment_id=payment.pk,
                outcome=outcome,
                amount=None,
                currency=None,
                source=Source.RECONCILIATION,
                data={"provider_status": status},
                reason="expired while pending" if outcome == "expired" else "",
            )
            counts[result] = counts.get(result, 0) + 1
        else:
            counts["still_pending"] = counts.get("still_pending", 0) + 1
        Payment.objects.filter(pk=payment.pk).update(reconcile_claimed_at=None)
    return counts


@transaction.atomic
def payment_record_provider_refund(
    *, payment_id, total_refunded: int, provider_refund_id: str, source: str, data: dict
) -> str:
    """The provider reports `total_refunded` so far (e.g. a refund made in Stripe's
    dashboard). Records the part Paydesk did not know about as a refund; a report of no
    more than we know is a no-op (repeats, and the echo of our own refunds)."""
    payment = payment_lock(payment_id)
    extra = min(total_refunded, payment.amount) - payment.amount_refunded
    if extra <= 0:
        return "known"
    if payment.status not in ("succeeded", "partially_refunded"):
        timeline_add(
            payment=payment,
            type="provider.refund_unexpected",
            source=source,
            flagged=True,
            data={**data, "status": payment.status, "total_refunded": total_refunded},
        )
        return "flagged"
    Payment.objects.filter(pk=payment.pk).update(amount_refunded=F("amount_refunded") + extra)
    refund = Refund.objects.create(
        payment=payment,
        amount=extra,
        status=Refund.Status.SUCCEEDED,
        provider_refund_id=provider_refund_id,
        reason="refunded at the provider",
    )
    payment.amount_refunded += extra
    to = "refunded" if payment.amount_refunded >= payment.amount else "partially_refunded"
    payment_transition(
        payment_id=payment.pk, to=to, source=source, data={**data, "refund": str(refund.pk), "amount": extra}
    )
    return to
