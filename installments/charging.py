"""The one charge of an attempt: what it is for (its amount and description) and making
it under the attempt's key, or finding the one already made under it. Every path that
charges an installment (the collector, an early payment, a down payment) goes through
here; the raw client Idempotency-Key never does: every key is derived by the caller and
scoped to one installment attempt or one order."""

from django.db.models import Sum

from config.errors import InsufficientFunds, InvalidRequest
from installments.models import Installment, InstallmentOrder
from payments.charges import charge_create
from payments.models import Charge

Claim = Installment.ClaimSource


def _charge(*, order: InstallmentOrder, key: str, amount: int, description: str):
    """Make the charge of `key` (or get the one already made under it: charge_create is
    idempotent on the key). Returns (charge, None), or (None, error) when the charge
    could not even be started and nothing was charged (no wallet money and no card...)."""
    try:
        charge = charge_create(
            merchant=order.merchant,
            customer=order.customer,
            amount=amount,
            currency=order.currency,
            idempotency_key=key,
            order_id=key,
            description=description,
        )
    except (InsufficientFunds, InvalidRequest) as exc:
        existing = Charge.objects.filter(merchant_id=order.merchant_id, idempotency_key=key).first()
        if existing is None:
            return None, exc
        return existing, None
    return charge, None


def _key_amount(installment: Installment) -> int:
    """What the charge of the installment's key is for: the installment, or every
    installment an early payment claimed under the same key."""
    if installment.claim_source != Claim.EARLY_PAYMENT:
        return installment.amount
    return Installment.objects.filter(order_id=installment.order_id, charge_key=installment.charge_key).aggregate(
        total=Sum("amount")
    )["total"]


def _description(installment: Installment) -> str:
    order_id = installment.order_id
    if installment.claim_source == Claim.EARLY_PAYMENT:
        return f"early payment of order {order_id}"
    if installment.claim_source == Claim.DOWN_PAYMENT:
        return f"down payment of order {order_id}"
    return f"installment {installment.sequence} of order {order_id}"
