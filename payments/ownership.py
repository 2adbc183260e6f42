"""Whether a charge owns a payment. A charge's card part is a payment of its own; such a
payment settles with its charge (a provider's report about it settles the charge), is not
canceled by itself, and is left to its charge by reconciliation. Every one of those
questions is asked here.
"""

from config import rows
from payments.models import Charge, Payment

# What rows.select reads alongside a payment (first_of): `owner_charge_pk`, the id of a
# charge that owns it, None when none does. payment_charge then costs no statement for a
# payment no charge owns.
OWNER = (("owner_charge_pk", Charge, "payment_id"),)
_UNREAD = object()


def payment_charge(payment: Payment) -> Charge | None:
    """The charge that owns `payment` (its newest, as Charge's ordering has it), or None."""
    if getattr(payment, "owner_charge_pk", _UNREAD) is None:
        return None  # read with OWNER: no charge owns it
    found = rows.select(Charge, [{"payment_id": payment.pk}], order_by="-created_at", limit=1)
    return found[0] if found else None


def payment_charge_backed(payment: Payment) -> bool:
    """Whether a charge owns `payment`."""
    return payment_charge(payment) is not None


def payments_by_provider_id(*, provider: str, provider_payment_id: str) -> list[Payment]:
    """The payments a provider knows by `provider_payment_id`, newest first, each with its
    merchant and whether a charge owns it (OWNER), in one fixed-shape statement: settling
    a provider's report needs all three."""
    return rows.select(
        Payment,
        [{"provider": provider, "provider_payment_id": provider_payment_id}],
        order_by="-created_at",
        related=("merchant",),
        first_of=OWNER,
    )
