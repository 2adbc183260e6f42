"""Charges: wallet first, then the saved card (DESIGN.md "Charges, wallets first").

    charge_create ── wallet covers it all: one transaction moves the money, settles the
                     splits and records a succeeded charge
                 ── otherwise tx 1: lock the wallet, hold what it can cover, record a
                     pending charge
                 ── no lock: charge the rest to the saved card off-session (idempotency key)
                 ── tx 2: card ok → capture the hold, book the card part, settle splits
                          card declined → void the hold (the wallet is as it was)

A provider that cannot be reached (or answers "processing") leaves the charge pending
with its hold; the charge's provider webhook, or the periodic `charges_resolve_pending`
asking again with the same idempotency key, settles it, so a charge is never made twice
at the provider and never lost. A charge still unresolved after CHARGE_PENDING_DEADLINE
seconds is failed, its hold released, and flagged for staff.

A charge owns its Payment: only the charge flow moves it (not cancel, not the payments
reconciliation, not a provider notification about the payment itself).
Lock order (booking.py): payment row, charge row, hold or transfer row, accounts by pk.
"""

import logging
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import Q
from django.utils import timezone

from config import rows
from config.errors import Conflict, InsufficientFunds, InvalidRequest
from config.faults import fault_point
from payments import booking
from payments.models import Charge, Payment, PaymentEvent
from payments.providers import ProviderDeclined, ProviderUnavailable, get_provider, resolve_provider_name
from payments.providers.base import OffSessionResult
from payments.services import INTERNAL_DETAIL, payment_data, payment_lock, payment_transition, timeline_add
from payments.splits import splits_validate
from wallets.ledger import Locked, accounts_by_key, in_transaction, post, wallet_key
from wallets.models import Hold
from wallets.moves import debit_posting, events_emit_by_merchant, wallet_events
from wallets.services import hold_capture, hold_create, hold_void
from webhooks.services import event_emit

logger = logging.getLogger("paydesk.charges")


Source = PaymentEvent.Source


def charge_data(charge: Charge) -> dict:
    return {
        "id": str(charge.pk),
        "payment": str(charge.payment_id),
        "customer": str(charge.customer_id),
        "status": charge.status,
        "amount": charge.amount,
        "currency": charge.currency,
        "wallet_amount": charge.wallet_amount,
        "external_amount": charge.external_amount,
        "split_instructions": charge.split_instructions,
        "failure_reason": charge.failure_reason or None,
        "metadata": charge.metadata,
    }


def _existing(*, merchant, idempotency_key: str, customer, amount: int, currency: str) -> Charge | None:
    charge = Charge.objects.filter(merchant=merchant, idempotency_key=idempotency_key).first()
    if charge is not None and (charge.customer_id, charge.amount, charge.currency) != (customer.pk, amount, currency):
        raise Conflict(f"Idempotency key {idempotency_key!r} was already used for a different charge.")
    return charge


def charge_create(
    *,
    merchant,
    customer,
    amount: int,
    currency: str,
    description: str = "",
    split_instructions=None,
    metadata: dict | None = None,
    idempotency_key: str | None = None,
    order_id: str | None = None,
    defer_card: bool = False,
) -> Charge:
    """Charge `amount` to the customer: wallet first, the rest to the saved card.

    Idempotent on (merchant, idempotency_key): a repeat for the same customer, amount and
    currency returns the first charge and charges nothing (installments derive the key
    from installment and attempt); the key reused for another charge raises Conflict.
    Locks the wallet and the accounts it books to, in pk order.
    Raises InsufficientFunds (402) when the wallet is short and there is no saved card,
    with nothing changed; InvalidRequest for bad splits. A declined card returns the
    charge `failed` with the wallet untouched; an unreachable provider returns it `pending`.

    `defer_card`: stop before the provider and return the charge `pending` (its wallet
    part held) when a card part is needed, so a caller can make it in its own
    transaction: commit, then charge_card(charge) with no lock held.
    """
    currency = currency.lower()
    splits = splits_validate(instructions=split_instructions or [], amount=amount)
    lookup = {"merchant": merchant, "customer": customer, "amount": amount, "currency": currency}
    if idempotency_key:
        existing = _existing(idempotency_key=idempotency_key, **lookup)
        if existing is not None:
            return existing if defer_card else charge_resume(existing)
    # Created before the transactions that lock them (booking.py says why).
    provider, provider_error = None, None
    if customer.payment_method:
        try:
            provider = resolve_provider_name(merchant=merchant, requested=None)
        except InvalidRequest as exc:  # matters only if the wallet falls short
            provider_error = exc
    accounts = booking.payment_accounts(
        merchant=merchant,
        currency=currency,
        amount=amount,
        split_instructions=splits,
        provider=provider,
        customer_id=customer.pk,
        wallet_of=customer.pk,  # the wallet in the same statement as the merchant's accounts
    )
    wallet = accounts.wallet
    try:
        charge = _charge_begin(
            merchant=merchant,
            customer=customer,
            amount=amount,
            currency=currency,
            description=description,
            splits=splits,
            metadata=metadata or {},
            idempotency_key=idempotency_key,
            order_id=order_id,
            wallet=wallet,
            provider=provider,
            provider_error=provider_error,
            accounts=accounts,
        )
    except IntegrityError:
        existing = _existing(idempotency_key=idempotency_key, **lookup) if idempotency_key else None
        if existing is None:
            raise
        return existing if defer_card else charge_resume(existing)
    if charge.status != Charge.Status.PENDING or defer_card:
        return charge
    fault_point("intent_committed")
    return charge_card(charge)


def charge_resume(charge: Charge) -> Charge:
    """A retry of the request that began `charge`: if its card part was never asked for
    (the process died first), ask now, with the same key `ch-<id>`, claimed as
    charges_resolve_pending claims so the two never make the call at once."""
    if charge.status != Charge.Status.PENDING or charge.provider_charge_id:
        return charge
    now = timezone.now()
    claimed = (
        Charge.objects.filter(pk=charge.pk, status=Charge.Status.PENDING, provider_charge_id="")
        .filter(Q(claimed_at__isnull=True) | Q(claimed_at__lt=now - timedelta(minutes=5)))
        .update(claimed_at=now)
    )
    return charge_card(charge) if claimed else charge


@transaction.atomic
def _charge_begin(
    *,
    merchant,
    customer,
    amount,
    currency,
    description,
    splits,
    metadata,
    idempotency_key,
    order_id,
    wallet,
    provider,
    provider_error,
    accounts,
) -> Charge:
    locked = booking.accounts_lock([wallet, *accounts.all()])
    available = 0
    if wallet is not None:
        row = locked.get(wallet)
        available = max(row.balance - row.held, 0)
    wallet_amount = min(available, amount)
    external_amount = amount - wallet_amount
    if not external_amount:  # the wallet covers it all: done in this transaction
        request = WalletCharge(customer, amount, idempotency_key, order_id, description, splits, metadata)
        [charge] = _wallet_charges(
            merchant=merchant, currency=currency, requests=[request], wallets=[wallet], locked=locked
        )
        return charge
    if not provider:
        if provider_error is not None:
            raise provider_error
        raise InsufficientFunds(
            f"The wallet covers {wallet_amount} of {amount} and the customer has no saved card.", param="amount"
        )
    charge_id = uuid.uuid4()
    payment = Payment.objects.create(
        merchant=merchant,
        customer=customer,
        order_id=order_id or f"charge:{charge_id}",
        amount=amount,
        currency=currency,
        provider=provider,
        description=description,
        metadata=metadata,
        split_instructions=splits,
    )
    timeline_add(
        payment=payment,
        type="payment.created",
        source=Source.API,
        to_status="pending",
        data={"amount": amount, "currency": currency, "via": "charge"},
    )
    charge = Charge.objects.create(
        id=charge_id,
        merchant=merchant,
        customer=customer,
        payment=payment,
        amount=amount,
        currency=currency,
        wallet_amount=wallet_amount,
        external_amount=external_amount,
        provider=provider,
        split_instructions=splits,
        description=description,
        metadata=metadata,
        idempotency_key=idempotency_key,
    )
    timeline_add(
        payment=payment,
        type="charge.created",
        source=Source.API,
        data={"charge": str(charge.pk), "wallet_amount": wallet_amount, "external_amount": external_amount},
    )
    reference = f"charge:{charge.pk}"
    if wallet_amount:
        charge.hold = hold_create(
            account=wallet, amount=wallet_amount, reference=reference, idempotency_key=reference, owner=reference
        )
        charge.save(update_fields=["hold"])
    return charge


@dataclass(frozen=True)
class WalletCharge:
    """One charge that the customer's wallet may cover in full (charges_from_wallets)."""

    customer: object
    amount: int
    idempotency_key: str | None
    order_id: str | None
    description: str = ""
    splits: list = field(default_factory=list)  # validated split instructions
    metadata: dict = field(default_factory=dict)


@in_transaction()
def charges_from_wallets(
    *, merchant, currency: str, charges: Sequence[WalletCharge], locked: Locked | None = None
) -> list[Charge | None]:
    """charge_create for many charges of one merchant that customers' wallets can cover,
    set-based: a few statements whatever their number (a chunk of due installments).

    For each, in order: the charge already made under its key (whatever its status), a
    new charge that succeeded because the customer's wallet covered the whole amount, or
    None: no wallet, or not enough in it: make that one with charge_create (wallet part
    plus card, or a 402). Locks the wallets and the merchant's balance shards in pk order;
    runs in the caller's transaction if there is one, without a savepoint (after an
    error the caller can only roll back: collection rolls back that shard's rows).
    Raises Conflict if a key was used for a different charge; IntegrityError if a charge
    under one of the keys is being made concurrently (the caller retries those one by
    one). `locked`: the caller's lock of the wallets and shards (wallet_debits_lock),
    read instead of selecting them again.
    """
    currency = currency.lower()
    made = {
        c.idempotency_key: c
        for c in Charge.objects.filter(merchant=merchant, idempotency_key__in=[c.idempotency_key for c in charges])
    }
    for request in charges:
        existing = made.get(request.idempotency_key)
        if existing is not None and (existing.customer_id, existing.amount, existing.currency) != (
            request.customer.pk,
            request.amount,
            currency,
        ):
            raise Conflict(f"Idempotency key {request.idempotency_key!r} was already used for a different charge.")
    todo = [request for request in charges if request.idempotency_key not in made]
    keys = [wallet_key(merchant_id=merchant.pk, currency=currency, customer_id=c.customer.pk) for c in todo]
    found = locked.by_key if locked is not None else accounts_by_key(keys)
    wallets = [found.get(key) for key in keys]
    done = _wallet_charges(merchant=merchant, currency=currency, requests=todo, wallets=wallets, locked=locked)
    for request, charge in zip(todo, done, strict=True):
        if charge is not None:
            made[request.idempotency_key] = charge
    return [made.get(request.idempotency_key) for request in charges]


def _wallet_charges(
    *, merchant, currency: str, requests: Sequence[WalletCharge], wallets, locked=None
) -> list[Charge | None]:
    """The one core of a charge its customer's wallet covers in full, for one charge
    (_charge_begin) or many (charges_from_wallets): in one batch of the ledger core, each
    wallet debit and the split instructions paid from what it brought in; then a
    succeeded payment and charge, their timeline, and wallet.debited, payment.succeeded,
    charge.succeeded per charge, each written set-based. A charge whose wallet is missing
    or cannot cover it is None, with nothing written for it. `locked`: the caller's lock of
    the accounts (wallets.ledger.lock), if it took it."""
    wallets = {w.customer_id: w for w in wallets if w is not None}
    planned, postings = [], []
    for request in requests:
        wallet = wallets.get(request.customer.pk)
        if wallet is None:
            planned.append(None)
            continue
        charge_id = uuid.uuid4()
        reference = f"charge:{charge_id}"
        debit = debit_posting(
            wallet=wallet, amount=request.amount, reference=reference, reason="wallet part of a charge", if_covered=True
        )
        splits = booking.splits_posting(
            merchant_id=merchant.pk,
            currency=currency,
            customer_id=request.customer.pk,
            amount=request.amount,
            split_instructions=request.splits,
            reference=reference,
            needs=debit,
        )
        postings += [debit, splits] if splits else [debit]
        planned.append((request, charge_id, debit))
    posted = dict(zip(map(id, postings), post(postings, locked=locked), strict=True)) if postings else {}
    payments, new_charges, timeline, events, results = [], [], [], [], []
    for plan in planned:
        debit = posted.get(id(plan[2])) if plan else None
        if debit is None:
            results.append(None)
            continue
        request, charge_id, _ = plan
        payment = Payment(
            id=uuid.uuid4(),
            merchant=merchant,
            customer=request.customer,
            order_id=request.order_id or f"charge:{charge_id}",
            amount=request.amount,
            currency=currency,
            provider="wallet",
            status=Payment.Status.SUCCEEDED,
            description=request.description,
            metadata=request.metadata,
            split_instructions=request.splits,
        )
        charge = Charge(
            id=charge_id,
            merchant=merchant,
            customer=request.customer,
            payment=payment,
            amount=request.amount,
            currency=currency,
            wallet_amount=request.amount,
            external_amount=0,
            status=Charge.Status.SUCCEEDED,
            wallet_transfer=debit.transfer,
            split_instructions=request.splits,
            description=request.description,
            metadata=request.metadata,
            idempotency_key=request.idempotency_key,
        )
        payments.append(payment)
        new_charges.append(charge)
        results.append(charge)
        created = {"amount": request.amount, "currency": currency, "via": "charge"}
        parts = {"charge": str(charge_id), "wallet_amount": request.amount, "external_amount": 0}
        timeline += [
            PaymentEvent(payment=payment, type="payment.created", source=Source.API, to_status="pending", data=created),
            PaymentEvent(payment=payment, type="charge.created", source=Source.API, data=parts),
            PaymentEvent(
                payment=payment,
                type="payment.succeeded",
                source=Source.API,
                from_status="pending",
                to_status="succeeded",
                data={"charge": str(charge_id)},
            ),
        ]
        events += wallet_events([debit])
        events += [
            (merchant.pk, "payment.succeeded", payment_data(payment)),
            (merchant.pk, "charge.succeeded", charge_data(charge)),
        ]
    if payments:
        # One statement per model whatever the batch, the API's charge of one included (config.rows).
        rows.insert_many(payments)
        rows.insert_many(new_charges)
        rows.insert_many(timeline)
        events_emit_by_merchant(events)
    return results


def charge_card(charge: Charge) -> Charge:
    """Charge the card part of a pending charge (call it with no lock held: the provider
    is called) and record the answer; leave the charge pending when the provider could
    not be reached or is still processing. Idempotent on the charge: its key is `ch-<id>`."""
    try:
        result = get_provider(charge.provider).charge_off_session(
            customer=charge.customer,
            amount=charge.external_amount,
            currency=charge.currency,
            idempotency_key=f"ch-{charge.pk}",
            description=charge.description,
            metadata={"paydesk_charge": str(charge.pk), "paydesk_payment": str(charge.payment_id)},
        )
        fault_point("provider_called")
    except ProviderDeclined as exc:
        # The clean message is the charge's failure_reason; the provider's own text is staff's.
        logger.warning(
            "provider refused the card part of a charge", extra={"charge": str(charge.pk), "detail": exc.detail}
        )
        result = OffSessionResult(provider_payment_id="", status="failed", failure_reason=exc.message[:500])
        return _charge_record(charge=charge, result=result, source=Source.API, detail=exc.detail)
    except ProviderUnavailable as exc:
        logger.warning(
            "card part of a charge could not be made; it stays pending and is retried",
            extra={"charge": str(charge.pk), "detail": exc.detail[:2000]},
        )
        Charge.objects.filter(pk=charge.pk).update(failure_reason=f"retrying: {exc.message}"[:500], claimed_at=None)
        charge.refresh_from_db()
        return charge
    return _charge_record(charge=charge, result=result, source=Source.API)


def _charge_record(*, charge: Charge, result: OffSessionResult, source: str, detail: str = "") -> Charge:
    if result.status == "pending":
        with transaction.atomic():
            Charge.objects.filter(pk=charge.pk).update(
                provider_charge_id=result.provider_payment_id, failure_reason="", claimed_at=None
            )
            if result.provider_payment_id:
                Payment.objects.filter(pk=charge.payment_id).update(provider_payment_id=result.provider_payment_id)
        charge.refresh_from_db()
        return charge
    return charge_finish(
        charge_id=charge.pk,
        card_ok=result.succeeded,
        provider_charge_id=result.provider_payment_id,
        reason=result.failure_reason,
        source=source,
        detail=detail,
    )


def charge_finish(
    *,
    charge_id,
    card_ok: bool,
    provider_charge_id: str,
    reason: str,
    source: str,
    abandoned: bool = False,
    detail: str = "",
) -> Charge:
    """Settle a pending charge once the card part's outcome is known: capture or void the
    hold, book the card part, settle the splits, move the payment, emit charge.succeeded /
    charge.failed. Locks the payment, the charge, the hold, then the accounts. A no-op
    unless the charge is pending, so a webhook and the API answer may both call it.
    `abandoned`: failed because the provider never answered (flagged for staff).
    `detail`: the provider's own account of a failure, kept in the timeline for staff."""
    charge = Charge.objects.select_related("merchant").get(pk=charge_id)
    accounts = booking.payment_accounts(
        merchant=charge.merchant,
        currency=charge.currency,
        amount=charge.amount,
        split_instructions=charge.split_instructions,
        provider=charge.provider,
        customer_id=charge.customer_id,
    )
    with transaction.atomic():
        payment_lock(charge.payment_id)
        charge = (
            Charge.objects.select_for_update(no_key=True, of=("self",))  # not the merchant's or customer's row
            .select_related("merchant", "customer")
            .get(pk=charge_id)
        )
        if charge.status != Charge.Status.PENDING:
            return charge
        if abandoned:
            timeline_add(
                payment=charge.payment,
                type="charge.abandoned",
                source=source,
                flagged=True,
                data={"charge": str(charge.pk), "reason": reason},
            )
            logger.error("pending charge abandoned at its deadline", extra={"charge": str(charge.pk)})
        hold = Hold.objects.select_for_update(no_key=True).get(pk=charge.hold_id) if charge.hold_id else None
        if hold is not None and hold.destination_id != accounts.merchant_balance.pk:
            # The wallet part lands where the hold says (a shard chosen when it was made):
            # the card part and the splits go there too, so the splits are covered.
            accounts.merchant_balance = hold.destination
        booking.accounts_lock([hold.account if hold else None, *accounts.all()])
        if card_ok:
            return _charge_card_succeeded(
                charge=charge, hold=hold, accounts=accounts, provider_charge_id=provider_charge_id, source=source
            )
        if hold is not None:
            hold_void(hold=hold, owner=f"charge:{charge.pk}")
        return _charge_failed(
            charge=charge,
            provider_charge_id=provider_charge_id,
            reason=reason or "card_declined",
            source=source,
            detail=detail,
        )


def _charge_card_succeeded(*, charge, hold, accounts, provider_charge_id: str, source: str) -> Charge:
    payment = charge.payment
    reference = f"charge:{charge.pk}"
    if hold is not None:
        charge.wallet_transfer = hold_capture(hold=hold, reference=reference, owner=reference).capture_transfer
    booking.book_collected(accounts=accounts, payment=payment, amount=charge.external_amount, reference=reference)
    if provider_charge_id:
        # The payment's provider id is the card part's: refunds and Stripe's events find it.
        Payment.objects.filter(pk=payment.pk).update(provider_payment_id=provider_charge_id)
    return _charge_succeeded(charge=charge, provider_charge_id=provider_charge_id, source=source)


def _charge_succeeded(*, charge: Charge, provider_charge_id: str, source: str = Source.API) -> Charge:
    charge.provider_charge_id = provider_charge_id
    charge.status, charge.failure_reason, charge.claimed_at = Charge.Status.SUCCEEDED, "", None
    charge.save(
        update_fields=["status", "failure_reason", "provider_charge_id", "claimed_at", "wallet_transfer", "updated_at"]
    )
    payment_transition(payment_id=charge.payment_id, to="succeeded", source=source, data={"charge": str(charge.pk)})
    event_emit(merchant=charge.merchant, type="charge.succeeded", data=charge_data(charge))
    return charge


def _charge_failed(*, charge: Charge, provider_charge_id: str, reason: str, source: str, detail: str = "") -> Charge:
    charge.provider_charge_id = provider_charge_id
    charge.status, charge.failure_reason, charge.claimed_at = Charge.Status.FAILED, reason[:1000], None
    charge.save(update_fields=["status", "failure_reason", "provider_charge_id", "claimed_at", "updated_at"])
    data = {"charge": str(charge.pk)}
    if detail and detail != reason:
        data[INTERNAL_DETAIL] = detail[:2000]
    payment_transition(
        payment_id=charge.payment_id, to="failed", source=source, reason=charge.failure_reason, data=data
    )
    event_emit(merchant=charge.merchant, type="charge.failed", data=charge_data(charge))
    return charge


def charge_settle_from_provider(
    *,
    charge: Charge,
    outcome: str,
    amount: int | None,
    currency: str | None,
    provider_charge_id: str,
    data: dict,
    reason: str = "",
) -> tuple[str, bool]:
    """The provider's webhook about a charge's card part. Returns (what happened, flagged).

    The amount must be the card part (`external_amount`), never the whole charge; a
    mismatch changes nothing and is flagged. A pending charge is settled; a repeat is a
    no-op; a late failure after success changes nothing; a success for a charge already
    failed is flagged for staff (money arrived for something we gave up on)."""
    source = Source.PROVIDER_WEBHOOK
    if (amount is not None and amount != charge.external_amount) or (
        currency is not None and currency.lower() != charge.currency
    ):
        with transaction.atomic():
            timeline_add(
                payment=payment_lock(charge.payment_id),
                type="provider.mismatch",
                source=source,
                flagged=True,
                data={
                    **data,
                    "charge": str(charge.pk),
                    "expected": {"amount": charge.external_amount, "currency": charge.currency},
                    "got": {"amount": amount, "currency": currency},
                },
            )
        logger.error("provider event does not match the charge's card part", extra={"charge": str(charge.pk)})
        return "mismatch", True
    if charge.status == Charge.Status.PENDING and outcome in ("succeeded", "failed", "canceled", "expired"):
        settled = charge_finish(
            charge_id=charge.pk,
            card_ok=outcome == "succeeded",
            provider_charge_id=provider_charge_id,
            reason=reason or outcome,
            source=source,
        )
        if settled.status == ("succeeded" if outcome == "succeeded" else "failed"):
            return outcome, False
        charge = settled  # settled meanwhile by the other path: judge it below
    if (charge.status == "succeeded") == (outcome == "succeeded"):
        return "duplicate", False
    flagged = outcome == "succeeded"
    with transaction.atomic():
        timeline_add(
            payment=payment_lock(charge.payment_id),
            type=f"provider.late_{outcome}",
            source=source,
            flagged=flagged,
            data={**data, "charge": str(charge.pk), "status_kept": charge.status},
        )
    if flagged:
        logger.error("provider reports success for a charge already failed", extra={"charge": str(charge.pk)})
    return f"ignored_after_{charge.status}", flagged


def charges_resolve_pending(
    *, now: datetime | None = None, older_than: timedelta = timedelta(minutes=1), limit: int = 200
) -> int:
    """Ask again about charges whose card part is unresolved: the same idempotency key
    (never a second charge) when the provider was unreachable, a status lookup when it
    answered "processing". Past CHARGE_PENDING_DEADLINE the charge is failed and flagged.
    Claimed with SKIP LOCKED and a lease: concurrent runs never work on one charge at
    once; one charge's trouble never stops the run. Returns how many were looked at."""
    now = now or timezone.now()
    with transaction.atomic():
        due = list(
            Charge.objects.select_for_update(skip_locked=True)
            .filter(status=Charge.Status.PENDING, created_at__lte=now - older_than)
            .filter(Q(claimed_at__isnull=True) | Q(claimed_at__lt=now - timedelta(minutes=5)))
            .order_by("created_at")[:limit]
        )
        Charge.objects.filter(pk__in=[c.pk for c in due]).update(claimed_at=now)
    for charge in due:
        try:
            _charge_resolve(charge, now=now)
        except Exception:
            logger.exception("could not resolve a pending charge", extra={"charge": str(charge.pk)})
            Charge.objects.filter(pk=charge.pk).update(claimed_at=None)
    return len(due)


def _charge_resolve(charge: Charge, *, now: datetime) -> Charge:
    """One look at a pending charge: the same off-session call again (no provider id yet:
    the first never got an answer) or a status lookup. Past CHARGE_PENDING_DEADLINE, a
    look that still settles nothing fails the charge, abandoned (flagged for staff)."""
    if not charge.provider_charge_id:
        charge = charge_card(charge)
    else:
        try:
            result = get_provider(charge.provider).retrieve_charge(provider_charge_id=charge.provider_charge_id)
        except (ProviderUnavailable, ProviderDeclined) as exc:
            logger.warning(
                "pending charge: status lookup failed", extra={"charge": str(charge.pk), "detail": exc.detail}
            )
        else:
            charge = _charge_record(charge=charge, result=result, source=Source.RECONCILIATION)
    if charge.status != Charge.Status.PENDING:
        return charge
    if charge.created_at <= now - timedelta(seconds=settings.CHARGE_PENDING_DEADLINE):
        return charge_finish(
            charge_id=charge.pk,
            card_ok=False,
            provider_charge_id=charge.provider_charge_id,
            reason="the provider never confirmed the card part",
            source=Source.RECONCILIATION,
            abandoned=True,
        )
    Charge.objects.filter(pk=charge.pk).update(claimed_at=None)
    return charge
