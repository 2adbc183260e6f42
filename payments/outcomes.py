"""Webhook-driven outcomes: what a provider reports about a payment (a verified webhook,
or reconciliation asking it), applied under the payment's lock. A repeat is a no-op, a
late failure never undoes a success, money collected is booked exactly once whatever
came before (and refunded when Paydesk had closed the payment), and what does not match
the payment changes nothing and is flagged for staff.
"""

import logging
from functools import partial

from django.db import transaction

from payments import booking
from payments.models import TRANSITIONS, Payment, Refund
from payments.refunds import REFUND_STATES, _refund_send_later, _refunded_change
from payments.transitions import Source, payment_data, payment_lock, payment_transition, timeline_add
from wallets.ledger import in_transaction
from wallets.models import Transfer
from webhooks.services import event_emit

logger = logging.getLogger("paydesk.payments")


def payment_settle_from_provider(
    *,
    payment_id,
    outcome: str,
    amount: int | None,
    currency: str | None,
    source: str,
    data: dict,
    reason: str = "",
    payment: Payment | None = None,
) -> tuple[str, bool]:
    """A provider (webhook or reconciliation) says the payment `outcome`d
    (succeeded/failed/canceled/expired). Returns (what happened, flagged).

    - amount/currency given and not the payment's → nothing changes; a flagged timeline
      event is written and staff are alerted (logged at ERROR, flagged in admin).
    - a state the payment is already in → no-op (repeats are harmless).
    - a late failure/cancel after success → no change (never undo a success).
    - money a provider reports collected is always booked, exactly once (a repeat, even
      after the payment moved on, books nothing):
      - pending → succeeded;
      - failed → succeeded (the provider collected after all: a retried Stripe intent,
        a "paid" after "failed"), unless the order has another payment pending or paid
        since;
      - otherwise (canceled, expired, or that failed one) the money is booked and
        refunded automatically (payment_collected_after_close), the payment keeps its
        status and is flagged for staff.
    On success the collected amount is booked (provider clearing → merchant balance) and
    the split instructions settled, in the same transaction. Locks the payment, then the
    accounts in pk order. `payment`: the caller's read of it with its merchant (an
    inbound event's handler has just made it), saving a second one. In the caller's
    transaction if there is one, without a savepoint: nothing is written before a
    domain error is raised.
    """
    if payment is None:
        payment = Payment.objects.select_related("merchant").get(pk=payment_id)
    merchant = payment.merchant
    accounts = None
    # Read before the lock (booking.py says why). Statuses only move on, never back to
    # these: one that needs the accounts under the lock needed them here already.
    if outcome == "succeeded" and payment.status in ("pending", *CLOSED_STATES):
        accounts = booking.payment_accounts(
            merchant=payment.merchant,
            currency=payment.currency,
            amount=payment.amount,
            split_instructions=payment.split_instructions,
            provider=payment.provider,
            customer_id=payment.customer_id,
        )
    with in_transaction():
        payment = payment_lock(payment_id)
        payment.merchant = merchant  # the same row: no lazy read of it for the ledger and the outbox
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
        if payment.status == outcome or (outcome == "succeeded" and payment.status in REFUND_STATES):
            return "duplicate", False
        if outcome == "succeeded" and payment.status in CLOSED_STATES:
            if _collected_booked(payment):
                return "duplicate", False  # booked (and refunded) when its first report came
            if payment.status != "failed" or _order_paid_elsewhere(payment):
                refund = payment_collected_after_close(payment=payment, accounts=accounts, source=source, data=data)
                transaction.on_commit(partial(_refund_send_later, refund.pk, source))
                return f"refunded_after_{payment.status}", True
        if outcome not in TRANSITIONS.get(payment.status, ()):
            timeline_add(
                payment=payment,
                type=f"provider.late_{outcome}",
                source=source,
                data={**data, "status_kept": payment.status},
            )
            return f"ignored_after_{payment.status}", False
        if outcome == "succeeded":
            _book_collected(payment=payment, accounts=accounts)
        payment_transition(payment_id=payment.pk, locked=payment, to=outcome, source=source, data=data, reason=reason)
        return outcome, False


@transaction.atomic
def payment_attempt_failed(*, payment_id, source: str, data: dict, error: dict) -> tuple[str, bool]:
    """One attempt to pay failed and the payment stays open for another (Stripe's
    payment_intent.payment_failed: the PaymentIntent is back to requires_payment_method
    and the payer may try another card; a later success settles it). Moves no money and
    changes no status. Returns (what happened, flagged).

    Locks the payment. Pending: a `payment.attempt_failed` timeline event with the
    provider's error and the outbound event of that name. Already settled: recorded as a
    late failure, nothing else (never undo a success). Idempotent: an attempt already
    recorded (same provider charge id) is a no-op.
    """
    payment = payment_lock(payment_id)
    attempt = error.get("charge") or ""
    if attempt and payment.timeline.filter(type__in=ATTEMPT_EVENTS, data__attempt=attempt).exists():
        return "duplicate", False
    event_data = {**data, "attempt": attempt, "error": error}
    if payment.status != "pending":
        timeline_add(
            payment=payment,
            type="provider.late_failed",
            source=source,
            data={**event_data, "status_kept": payment.status},
        )
        return f"ignored_after_{payment.status}", False
    timeline_add(payment=payment, type="payment.attempt_failed", source=source, data=event_data)
    event_emit(merchant=payment.merchant, type="payment.attempt_failed", data={**payment_data(payment), "error": error})
    return "attempt_failed", False


ATTEMPT_EVENTS = ("payment.attempt_failed", "provider.late_failed")


# A payment Paydesk closed without its money: a success reported for it afterwards is
# booked all the same (payment_settle_from_provider).
CLOSED_STATES = ("failed", "canceled", "expired")


def _book_collected(*, payment: Payment, accounts: booking.PaymentAccounts) -> None:
    """Book what the provider collected for the payment and settle its splits (under the
    payment's lock): every transfer carries the reference `payment:<id>`."""
    locked = booking.accounts_lock(accounts.all())
    reference = f"payment:{payment.pk}"
    booking.book_collected(
        accounts=accounts, payment=payment, amount=payment.amount, reference=reference, locked=locked
    )


def _collected_booked(payment: Payment) -> bool:
    """Whether the provider's collection of this payment is on the ledger already."""
    return Transfer.objects.filter(merchant_id=payment.merchant_id, reference=f"payment:{payment.pk}").exists()


def _order_paid_elsewhere(payment: Payment) -> bool:
    """Whether another payment of the order is pending or was paid: then a late success
    of this one would make the payer pay the order twice."""
    return (
        Payment.objects.filter(merchant_id=payment.merchant_id, order_id=payment.order_id)
        .exclude(pk=payment.pk)
        .filter(status__in=("pending", "succeeded", *REFUND_STATES))
        .exists()
    )


def payment_collected_after_close(
    *, payment: Payment, accounts: booking.PaymentAccounts, source: str, data: dict
) -> Refund:
    """The provider collected a payment Paydesk had closed (canceled, expired, or failed
    with its order paid elsewhere): book the money like any success, then reserve and
    book a full refund of it, and flag the payment for staff. The payment keeps its status
    (its amount_refunded says all of it went back). Returns the refund, pending: its
    provider half is sent after commit (refund_send), never under a lock.

    The caller holds the payment's row lock and has checked that nothing is booked for it
    yet (_collected_booked): a repeated report books nothing. Locks the accounts in pk order.
    """
    status = payment.status
    booking.accounts_lock(accounts.all(pool=True))  # the refund below takes from the whole balance
    _book_collected(payment=payment, accounts=accounts)
    refund = Refund.objects.create(
        payment=payment,
        amount=payment.amount,
        provider_amount=payment.amount,
        reason=f"paid after it was {status}: refunded automatically",
    )
    reference = f"refund:{refund.pk}"
    _refunded_change(payment=payment, accounts=accounts, by=payment.amount, refund=refund, reference=reference)
    booking.book_provider_refund(
        accounts=accounts, payment=payment, amount=payment.amount, reference=reference, back=False
    )
    timeline_add(
        payment=payment,
        type="provider.late_succeeded",
        source=source,
        flagged=True,
        data={**data, "status_kept": status, "booked": payment.amount, "refund": str(refund.pk)},
    )
    timeline_add(
        payment=payment,
        type="refund.requested",
        source=source,
        data={
            "refund": str(refund.pk),
            "amount": payment.amount,
            "wallet_amount": 0,
            "provider_amount": payment.amount,
            "reason": refund.reason,
        },
    )
    logger.error(
        "provider collected a payment already closed: booked and refunded automatically",
        extra={"payment": str(payment.pk), "status": status, "refund": str(refund.pk)},
    )
    return refund


@transaction.atomic
def payment_flag_provider_data(*, payment_id, type: str, key: str, data: dict) -> bool:
    """Flag for staff something a provider signed that is not this payment's (e.g. eSewa
    success data for another transaction or amount). Changes nothing else. Once per `key`
    (what identifies the data, e.g. its signature): a repeat adds nothing. Locks the
    payment. Returns whether it was recorded now."""
    payment = payment_lock(payment_id)
    if payment.timeline.filter(type=type, data__key=key).exists():
        return False
    timeline_add(payment=payment, type=type, source=Source.PROVIDER_WEBHOOK, flagged=True, data={**data, "key": key})
    logger.error("provider data does not match the payment", extra={"payment": str(payment.pk), "type": type})
    return True
