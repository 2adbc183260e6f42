"""Charges: wallet first, then the saved card (DESIGN.md "Charges, wallets first").

    charge_create ── tx 1: lock the wallet, hold what it can cover, record a pending charge
                 ── no lock: charge the rest to the saved card off-session (idempotency key)
                 ── tx 2: card ok → capture the hold, book the card part, settle splits
                          card declined → void the hold (the wallet is as it was)

A provider that cannot be reached leaves the charge pending with its hold; the periodic
`charges_resolve_pending` asks again with the same idempotency key, so a charge is never
made twice at the provider and never lost.
"""

import logging
import uuid
from datetime import datetime, timedelta

from django.db import IntegrityError, transaction
from django.db.models import Q
from django.utils import timezone

from config.errors import InsufficientFunds
from payments.models import Charge, Payment, PaymentEvent
from payments.providers import ProviderDeclined, ProviderUnavailable, get_provider, resolve_provider_name
from payments.services import payment_transition, timeline_add
from payments.splits import splits_allocate, splits_validate
from wallets.models import Account
from wallets.services import (
    account_get_or_create,
    hold_capture,
    hold_create,
    hold_void,
    merchant_balance_account,
    transfer_create,
)
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


def _wallet(customer, currency: str) -> Account | None:
    return Account.objects.filter(kind=Account.Kind.CUSTOMER_WALLET, customer=customer, currency=currency).first()


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
) -> Charge:
    """Charge `amount` to the customer: wallet first, the rest to the saved card.

    Idempotent on (merchant, idempotency_key): a repeat returns the first charge and
    charges nothing (installments derive the key from installment and attempt).
    Locks the wallet account while holding. Raises InsufficientFunds (402) when the wallet
    is short and there is no saved card, with nothing changed; InvalidRequest for bad
    splits. A declined card returns the charge `failed` with the wallet untouched.
    """
    currency = currency.lower()
    splits = splits_validate(instructions=split_instructions or [], amount=amount)
    if idempotency_key:
        existing = Charge.objects.filter(merchant=merchant, idempotency_key=idempotency_key).first()
        if existing is not None:
            return existing

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
        )
    except IntegrityError:
        existing = Charge.objects.filter(merchant=merchant, idempotency_key=idempotency_key).first()
        if existing is None:
            raise
        return existing
    if charge.external_amount == 0:
        return _charge_finish(charge_id=charge.pk, card_ok=True, provider_charge_id="", reason="")
    return _charge_card(charge)


@transaction.atomic
def _charge_begin(
    *, merchant, customer, amount, currency, description, splits, metadata, idempotency_key, order_id
) -> Charge:
    wallet = _wallet(customer, currency)
    available = 0
    if wallet is not None:
        wallet = Account.objects.select_for_update(no_key=True).get(pk=wallet.pk)
        available = max(wallet.balance - wallet.held, 0)
    wallet_amount = min(available, amount)
    external_amount = amount - wallet_amount
    provider = ""
    if external_amount:
        if not customer.payment_method:
            raise InsufficientFunds(
                f"The wallet covers {wallet_amount} of {amount} and the customer has no saved card.", param="amount"
            )
        provider = resolve_provider_name(merchant=merchant, requested=None)
    charge_id = uuid.uuid4()
    payment = Payment.objects.create(
        merchant=merchant,
        customer=customer,
        order_id=order_id or f"charge:{charge_id}",
        amount=amount,
        currency=currency,
        provider=provider or "wallet",
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
    if wallet_amount:
        charge.hold = hold_create(
            account=wallet, amount=wallet_amount, reference=f"charge:{charge.pk}", idempotency_key=f"charge:{charge.pk}"
        )
        charge.save(update_fields=["hold"])
    timeline_add(
        payment=payment,
        type="charge.created",
        source=Source.API,
        data={"charge": str(charge.pk), "wallet_amount": wallet_amount, "external_amount": external_amount},
    )
    return charge


def _charge_card(charge: Charge) -> Charge:
    """Charge the card part (no lock held); record the answer, or leave it pending when
    the provider could not be reached."""
    try:
        result = get_provider(charge.provider).charge_off_session(
            customer=charge.customer,
            amount=charge.external_amount,
            currency=charge.currency,
            idempotency_key=f"ch-{charge.pk}",
            description=charge.description,
            metadata={"paydesk_charge": str(charge.pk), "paydesk_payment": str(charge.payment_id)},
        )
    except ProviderDeclined as exc:
        return _charge_finish(charge_id=charge.pk, card_ok=False, provider_charge_id="", reason=str(exc)[:500])
    except ProviderUnavailable as exc:
        logger.warning(
            "card part of a charge could not be made; it stays pending and is retried",
            extra={"charge": str(charge.pk), "error": str(exc)[:200]},
        )
        Charge.objects.filter(pk=charge.pk).update(failure_reason=f"retrying: {exc}"[:500], claimed_at=None)
        charge.refresh_from_db()
        return charge
    return _charge_finish(
        charge_id=charge.pk,
        card_ok=result.succeeded,
        provider_charge_id=result.provider_payment_id,
        reason=result.failure_reason,
    )


@transaction.atomic
def _charge_finish(*, charge_id, card_ok: bool, provider_charge_id: str, reason: str) -> Charge:
    """Settle a pending charge: capture or void its hold, book the card part, settle the
    splits, move the payment, emit charge.succeeded / charge.failed. A no-op unless pending."""
    charge = Charge.objects.select_for_update(no_key=True).select_related("merchant", "customer").get(pk=charge_id)
    if charge.status != Charge.Status.PENDING:
        return charge
    charge.provider_charge_id = provider_charge_id
    charge.claimed_at = None
    if card_ok:
        merchant_balance = merchant_balance_account(merchant=charge.merchant, currency=charge.currency)
        if charge.hold_id:
            hold_capture(hold=charge.hold, reference=f"charge:{charge.pk}")
        if charge.external_amount:
            clearing = account_get_or_create(
                kind=Account.Kind.PROVIDER_CLEARING, currency=charge.currency, name=charge.provider
            )
            transfer_create(
                legs=[(clearing, -charge.external_amount), (merchant_balance, charge.external_amount)],
                currency=charge.currency,
                merchant=charge.merchant,
                reference=f"charge:{charge.pk}",
                description="card part of a charge",
            )
        parts = splits_allocate(instructions=charge.split_instructions, amount=charge.amount)
        parts = [(d, p) for d, p in parts if p > 0]
        if parts:
            recipients = [
                (
                    account_get_or_create(
                        kind=Account.Kind.RECIPIENT, merchant=charge.merchant, currency=charge.currency, name=d[:100]
                    ),
                    p,
                )
                for d, p in parts
            ]
            transfer_create(
                legs=[(merchant_balance, -sum(p for _, p in parts)), *recipients],
                currency=charge.currency,
                merchant=charge.merchant,
                reference=f"charge:{charge.pk}",
                description="split instructions",
            )
        charge.status, charge.failure_reason = Charge.Status.SUCCEEDED, ""
        charge.save(update_fields=["status", "failure_reason", "provider_charge_id", "claimed_at", "updated_at"])
        payment_transition(
            payment_id=charge.payment_id, to="succeeded", source=Source.API, data={"charge": str(charge.pk)}
        )
        event_emit(merchant=charge.merchant, type="charge.succeeded", data=charge_data(charge))
    else:
        if charge.hold_id:
            hold_void(hold=charge.hold)
        charge.status, charge.failure_reason = Charge.Status.FAILED, reason or "card_declined"
        charge.save(update_fields=["status", "failure_reason", "provider_charge_id", "claimed_at", "updated_at"])
        payment_transition(
            payment_id=charge.payment_id,
            to="failed",
            source=Source.API,
            reason=charge.failure_reason,
            data={"charge": str(charge.pk)},
        )
        event_emit(merchant=charge.merchant, type="charge.failed", data=charge_data(charge))
    return charge


def charges_resolve_pending(
    *, now: datetime | None = None, older_than: timedelta = timedelta(minutes=1), limit: int = 200
) -> int:
    """Ask the provider again (same idempotency key: never a second charge) about charges
    whose card part could not be made. Claimed with SKIP LOCKED and a lease: concurrent
    runs never work on one charge at once. Returns how many were looked at."""
    now = now or timezone.now()
    with transaction.atomic():
        due = list(
            Charge.objects.select_for_update(skip_locked=True)
            .filter(status=Charge.Status.PENDING, external_amount__gt=0, created_at__lte=now - older_than)
            .filter(Q(claimed_at__isnull=True) | Q(claimed_at__lt=now - timedelta(minutes=5)))
            .order_by("created_at")[:limit]
        )
        Charge.objects.filter(pk__in=[c.pk for c in due]).update(claimed_at=now)
    for charge in due:
        _charge_card(charge)
    return len(due)
