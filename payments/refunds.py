"""Refunds: all or part of a succeeded payment back where it came from, the wallet part
at once on the ledger, the provider part through the provider outside any lock (the
refund's id as idempotency key), retried while the provider cannot be reached; and
refunds the provider reports it made itself, booked like ours.
"""

import logging
from datetime import datetime, timedelta

from django.db import transaction
from django.db.models import F, Q, Sum
from django.utils import timezone

from config.errors import Conflict, IllegalTransition, InsufficientFunds, InvalidRequest, ProviderError
from config.faults import fault_point
from payments import booking
from payments.models import TRANSITIONS, Charge, Payment, Refund
from payments.providers import ProviderDeclined, ProviderUnavailable, get_provider
from payments.transitions import INTERNAL_DETAIL, Source, payment_lock, payment_transition, timeline_add
from wallets.models import Transfer
from wallets.services import transfer_reverse
from webhooks.services import enqueue

logger = logging.getLogger("paydesk.payments")

REFUND_STATES = ("partially_refunded", "refunded")


def _payment_accounts(payment: Payment, charge: Charge | None) -> booking.PaymentAccounts:
    provider = (charge.provider if charge is not None else payment.provider) or None
    return booking.payment_accounts(
        merchant=payment.merchant,
        currency=payment.currency,
        amount=payment.amount,
        split_instructions=payment.split_instructions,
        provider=provider if (charge is None or charge.external_amount) else None,
        customer_id=payment.customer_id,
    )


def _refunded_change(*, payment: Payment, accounts, by: int, refund: Refund, reference: str) -> None:
    """Move the payment's reserved refund total by `by` (under its row lock) and bring
    each split recipient to exactly what it owes back for the new total, recording the
    moves on `refund`: the payment's refunds together say what each recipient returned."""
    Payment.objects.filter(pk=payment.pk).update(amount_refunded=F("amount_refunded") + by)
    payment.amount_refunded += by
    if not accounts.recipients:
        return
    returned: dict[str, int] = {}
    for moves in payment.refunds.values_list("split_returns", flat=True):
        for destination, amount in moves.items():
            returned[destination] = returned.get(destination, 0) + amount
    moves = booking.splits_rebalance(
        accounts=accounts, payment=payment, refunded=payment.amount_refunded, returned=returned, reference=reference
    )
    if moves:
        refund.refresh_from_db(fields=["split_returns"])
        for destination, amount in moves.items():
            refund.split_returns[destination] = refund.split_returns.get(destination, 0) + amount
        Refund.objects.filter(pk=refund.pk).update(split_returns=refund.split_returns)


def payment_refund(
    *,
    payment: Payment,
    amount: int | None = None,
    reason: str = "",
    source: str = Source.API,
    idempotency_key: str | None = None,
) -> Refund:
    """Refund all or part of what is left of a succeeded payment, back where it came from.

    Under the payment's row lock (then the wallet transfer's, then the accounts' in pk
    order): checks the amount (never more than what is left: InvalidRequest on
    `amount`), reserves it, takes the recipients' split shares back pro rata, returns any
    wallet-funded part of a charge at once with a ledger reversal of the wallet transfer,
    and books the provider part out of the merchant's balance. That part is then refunded
    through the provider outside the lock (the refund's id as idempotency key); if the
    provider refuses, its booking and reservation are undone and ProviderError raised.
    Ends partially_refunded or refunded, judged on the refunds that succeeded.
    Raises InsufficientFunds (402) when the merchant or a recipient has paid the money
    out, with nothing changed.

    Resumable on `idempotency_key` (unique per payment): a retry finds the refund that
    carries it and returns it, asking the provider again (same key `re-<id>`) if its
    answer was never recorded; nothing is refunded twice.
    """
    if idempotency_key:
        existing = Refund.objects.filter(payment_id=payment.pk, idempotency_key=idempotency_key).first()
        if existing is not None:
            return _refund_resume(existing, amount=amount)
    payment = Payment.objects.select_related("merchant").get(pk=payment.pk)
    charge = payment.charges.filter(status=Charge.Status.SUCCEEDED).first()
    if charge is None and not (provider := get_provider(payment.provider)).supports_refunds:
        raise InvalidRequest(provider.refunds_unsupported_message)
    accounts = _payment_accounts(payment, charge)
    with transaction.atomic():
        locked = payment_lock(payment.pk)
        if locked.status not in ("succeeded", "partially_refunded"):
            raise IllegalTransition(f"A {locked.status} payment cannot be refunded.")
        left = locked.amount - locked.amount_refunded
        amount = left if amount is None else amount
        if amount < 1 or amount > left:
            raise InvalidRequest(f"The refund must be between 1 and {left} (what is left).", param="amount")
        wallet_part = 0
        if charge is not None and charge.wallet_amount:
            wallet_refunded = (
                locked.refunds.exclude(status=Refund.Status.FAILED).aggregate(total=Sum("wallet_amount"))["total"] or 0
            )
            wallet_part = min(amount, charge.wallet_amount - wallet_refunded)
        provider_part = amount - wallet_part
        refund = Refund.objects.create(
            payment=locked,
            amount=amount,
            reason=reason,
            wallet_amount=wallet_part,
            provider_amount=provider_part,
            idempotency_key=idempotency_key or None,
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
        reference = f"refund:{refund.pk}"
        wallet_transfer = None
        if wallet_part:
            wallet_transfer = Transfer.objects.select_for_update(no_key=True).get(pk=charge.wallet_transfer_id)
        wallet_accounts = [e.account for e in wallet_transfer.entries.all()] if wallet_transfer else []
        booking.accounts_lock([*accounts.all(pool=True), *wallet_accounts])
        _refunded_change(payment=locked, accounts=accounts, by=amount, refund=refund, reference=reference)
        if wallet_part:
            transfer_reverse(
                transfer=wallet_transfer,
                amount=wallet_part,
                reference=reference,
                description="refund of the wallet part of a charge",
            )
        if provider_part:
            booking.book_provider_refund(
                accounts=accounts, payment=locked, amount=provider_part, reference=reference, back=False
            )
        else:
            return _refund_succeeded(payment=locked, refund=refund, provider_refund_id="", source=source)

    fault_point("intent_committed")
    return _refund_at_provider(refund=refund, source=source)


def _refund_resume(refund: Refund, *, amount: int | None) -> Refund:
    """A retry of the request that made `refund`: the same answer, nothing refunded twice."""
    if amount is not None and amount != refund.amount:
        raise Conflict("This Idempotency-Key was already used for a different refund.", param="Idempotency-Key")
    if refund.status == Refund.Status.FAILED:
        raise ProviderError(f"The provider could not refund: {refund.failure_reason}")
    if refund.status == Refund.Status.PENDING and refund.provider_amount:
        # Its provider answer was never recorded. Claimed as refunds_resolve_pending claims,
        # so the two never ask about it at once.
        now = timezone.now()
        claimed = (
            Refund.objects.filter(pk=refund.pk, status=Refund.Status.PENDING)
            .filter(Q(claimed_at__isnull=True) | Q(claimed_at__lt=now - timedelta(minutes=5)))
            .update(claimed_at=now)
        )
        if claimed:
            return _refund_at_provider(refund=refund, source=Source.API)
    return refund


def _refund_at_provider(*, refund: Refund, source: str) -> Refund:
    """The provider half of a refund whose amount is reserved and booked (no lock held
    while calling, the refund's id as idempotency key), then its outcome recorded:
    succeeded; refused (the provider part booked back, the recipients' shares returned,
    the refund reduced to its wallet part or failed, ProviderError raised); or, when the
    provider cannot be reached, left pending for refunds_resolve_pending to ask again
    with the same key (a timeout may have refunded: never give up on it silently)."""
    payment = Payment.objects.select_related("merchant").get(pk=refund.payment_id)
    charge = payment.charges.filter(status=Charge.Status.SUCCEEDED).first()
    provider_name = charge.provider if charge is not None else payment.provider
    try:
        result = get_provider(provider_name).refund(
            payment=payment, amount=refund.provider_amount, idempotency_key=f"re-{refund.pk}"
        )
        fault_point("provider_called")
        ok = result.status in ("succeeded", "pending")
        failure = "" if ok else f"provider refund {result.status}"
        failure_internal = failure
    except ProviderUnavailable as exc:
        logger.warning(
            "provider unreachable for a refund; it stays pending",
            extra={"refund": str(refund.pk), "detail": exc.detail[:2000]},
        )
        with transaction.atomic():
            timeline_add(
                payment=payment_lock(payment.pk),
                type="refund.retrying",
                source=source,
                data={"refund": str(refund.pk), "reason": exc.message[:500], INTERNAL_DETAIL: exc.detail[:2000]},
            )
            Refund.objects.filter(pk=refund.pk).update(
                failure_reason=f"retrying: {exc.message}"[:1000], claimed_at=None
            )
        refund.refresh_from_db()
        return refund
    except ProviderDeclined as exc:
        logger.warning("provider refused a refund", extra={"refund": str(refund.pk), "detail": exc.detail[:2000]})
        ok, failure, failure_internal = False, exc.message, exc.detail

    reference = f"refund:{refund.pk}"
    with transaction.atomic():
        locked = payment_lock(payment.pk)
        refund = Refund.objects.select_for_update(no_key=True).get(pk=refund.pk)
        if refund.status != Refund.Status.PENDING:
            return refund  # settled meanwhile by another attempt
        if ok:
            Refund.objects.filter(pk=refund.pk).update(failure_reason="", claimed_at=None)
            return _refund_succeeded(
                payment=locked, refund=refund, provider_refund_id=result.provider_refund_id, source=source
            )
        accounts = _payment_accounts(payment, charge)
        booking.accounts_lock(accounts.all(pool=True))
        booking.book_provider_refund(
            accounts=accounts, payment=locked, amount=refund.provider_amount, reference=reference, back=True
        )
        back = -refund.provider_amount
        _refunded_change(payment=locked, accounts=accounts, by=back, refund=refund, reference=reference)
        timeline_add(
            payment=locked,
            type="refund.failed",
            source=source,
            data={
                "refund": str(refund.pk),
                "provider_amount": refund.provider_amount,
                "reason": failure[:500],
                INTERNAL_DETAIL: failure_internal[:2000],
            },
        )
        if refund.wallet_amount:  # the wallet part went back already: the refund is for that much
            Refund.objects.filter(pk=refund.pk).update(
                amount=refund.wallet_amount,
                provider_amount=0,
                failure_reason=f"provider part failed: {failure}"[:1000],
                claimed_at=None,
            )
            refund.refresh_from_db()
            _refund_succeeded(payment=locked, refund=refund, provider_refund_id="", source=source)
        else:
            Refund.objects.filter(pk=refund.pk).update(
                status=Refund.Status.FAILED, failure_reason=failure[:1000], claimed_at=None
            )
    raise ProviderError(f"The provider could not refund: {failure}")


def refunds_resolve_pending(*, now: datetime | None = None, older_than: timedelta = timedelta(minutes=1)) -> int:
    """Ask the provider again, with the same idempotency key, about refunds it could not
    be reached for. Claimed with SKIP LOCKED and a lease, so concurrent runs never ask
    about one refund at once; one refund's trouble never stops the run. Returns how many
    were looked at."""
    now = now or timezone.now()
    with transaction.atomic():
        due = list(
            Refund.objects.select_for_update(skip_locked=True)
            .filter(status=Refund.Status.PENDING, provider_amount__gt=0, created_at__lte=now - older_than)
            .filter(Q(claimed_at__isnull=True) | Q(claimed_at__lt=now - timedelta(minutes=5)))
            .order_by("created_at")[:200]
        )
        Refund.objects.filter(pk__in=[r.pk for r in due]).update(claimed_at=now)
    for refund in due:
        try:
            _refund_at_provider(refund=refund, source=Source.RECONCILIATION)
        except ProviderError:
            pass  # refused: recorded as such
        except Exception:
            logger.exception("could not resolve a pending refund", extra={"refund": str(refund.pk)})
            Refund.objects.filter(pk=refund.pk).update(claimed_at=None)
    return len(due)


def _refund_succeeded(*, payment: Payment, refund: Refund, provider_refund_id: str, source: str) -> Refund:
    """Mark the refund succeeded and move the payment by what has succeeded so far
    (refunds still in flight don't count): refunded once they cover the amount."""
    Refund.objects.filter(pk=refund.pk).update(status=Refund.Status.SUCCEEDED, provider_refund_id=provider_refund_id)
    succeeded = payment.refunds.filter(status=Refund.Status.SUCCEEDED).aggregate(total=Sum("amount"))["total"] or 0
    payment.refresh_from_db(fields=["status"])
    to = "refunded" if succeeded >= payment.amount else "partially_refunded"
    data = {"refund": str(refund.pk), "amount": refund.amount}
    if to in TRANSITIONS.get(payment.status, ()):
        payment_transition(payment_id=payment.pk, to=to, source=source, data=data)
    else:
        timeline_add(payment=payment, type="refund.succeeded", source=source, data=data)
    refund.refresh_from_db()
    return refund


def _refund_send_later(refund_id, source: str) -> None:
    from payments.tasks import refund_send_task  # the tasks module imports this one

    # Best effort: if the broker is down, refunds_resolve_pending sends it within minutes.
    enqueue(refund_send_task, str(refund_id), source)


def refund_send(*, refund_id, source: str = Source.PROVIDER_WEBHOOK) -> Refund:
    """Send a refund reserved and booked earlier to its provider (the refund's id as
    idempotency key, no lock held) and record the outcome, as _refund_at_provider does. A
    no-op unless the refund is still pending; safe to run twice, and alongside
    refunds_resolve_pending. A refusal is recorded (the refund failed, its booking undone)
    and flagged for staff, not raised."""
    refund = Refund.objects.get(pk=refund_id)
    if refund.status != Refund.Status.PENDING or not refund.provider_amount:
        return refund
    try:
        return _refund_at_provider(refund=refund, source=source)
    except ProviderError as exc:
        with transaction.atomic():
            timeline_add(
                payment=payment_lock(refund.payment_id),
                type="refund.refused",
                source=source,
                flagged=True,
                data={"refund": str(refund.pk), "reason": exc.message[:500]},
            )
        logger.error("provider refused an automatic refund", extra={"refund": str(refund.pk)})
        refund.refresh_from_db()
        return refund


def payment_record_provider_refund(
    *, payment_id, total_refunded: int, provider_refund_id: str, source: str, data: dict
) -> str:
    """The provider reports `total_refunded` so far of what it collected (e.g. a refund
    made in Stripe's dashboard). Records the part Paydesk did not know about as a refund
    and books it like one of ours; a report of no more than we know is a no-op (repeats,
    and the echo of our own refunds). The provider only knows its own part: wallet parts
    of a charge never count here. If the merchant's balance (or a recipient's) no longer
    holds the money, the refund is recorded all the same and flagged for staff."""
    payment = Payment.objects.select_related("merchant").get(pk=payment_id)
    charge = payment.charges.filter(status=Charge.Status.SUCCEEDED).first()
    accounts = _payment_accounts(payment, charge)
    with transaction.atomic():
        payment = payment_lock(payment_id)
        collected = charge.external_amount if charge is not None else payment.amount
        known = (
            payment.refunds.exclude(status=Refund.Status.FAILED).aggregate(total=Sum("provider_amount"))["total"] or 0
        )
        extra = min(total_refunded, collected) - known
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
        extra = min(extra, payment.amount - payment.amount_refunded)
        refund = Refund.objects.create(
            payment=payment,
            amount=extra,
            provider_amount=extra,
            provider_refund_id=provider_refund_id,
            reason="refunded at the provider",
        )
        reference = f"refund:{refund.pk}"
        booking.accounts_lock(accounts.all(pool=True))
        try:
            with transaction.atomic():
                _refunded_change(payment=payment, accounts=accounts, by=extra, refund=refund, reference=reference)
                booking.book_provider_refund(
                    accounts=accounts, payment=payment, amount=extra, reference=reference, back=False
                )
        except InsufficientFunds as exc:
            Payment.objects.filter(pk=payment.pk).update(amount_refunded=F("amount_refunded") + extra)
            timeline_add(
                payment=payment,
                type="refund.unbooked",
                source=source,
                flagged=True,
                data={**data, "refund": str(refund.pk), "amount": extra, "reason": exc.message},
            )
            logger.error("a provider refund could not be booked on the ledger", extra={"payment": str(payment.pk)})
        _refund_succeeded(payment=payment, refund=refund, provider_refund_id=provider_refund_id, source=source)
        payment.refresh_from_db(fields=["status"])
        return payment.status
