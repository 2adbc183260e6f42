"""Reads for identity. Every lookup for an API caller is scoped to its merchant:
another merchant's object is simply not found."""

import uuid

from django.db.models import QuerySet

from config import rows
from config.errors import InvalidRequest, NotFound
from config.ids import parse_uuid

from .models import ApiKey, Customer, Merchant


def api_key_get_active(*, key_hash: str) -> ApiKey | None:
    return ApiKey.objects.select_related("merchant").filter(key_hash=key_hash, revoked_at__isnull=True).first()


def merchant_get_by_ref(*, ref: str) -> Merchant:
    """The merchant `ref` names: its id, or its name, exactly or else ignoring case (staff
    type "demo shop" for "Demo Shop"). Names are unique only as typed, so a name that
    matches several merchants but none exactly is refused (InvalidRequest, param
    `merchant`) rather than guessed. Raises NotFound (param `merchant`) for no match."""
    ref = ref.strip()
    try:
        merchant = Merchant.objects.filter(pk=uuid.UUID(ref)).first()
    except ValueError:
        merchant = None
    merchant = merchant or Merchant.objects.filter(name=ref).first()
    if merchant is not None:
        return merchant
    matches = list(Merchant.objects.filter(name__iexact=ref).order_by("name")[:5])
    if len(matches) == 1:
        return matches[0]
    if matches:
        names = ", ".join(repr(m.name) for m in matches)
        raise InvalidRequest(
            f"{ref!r} could be any of these merchants: {names}. Give the exact name or the id.", param="merchant"
        )
    raise NotFound(f"No such merchant: {ref!r} (give its id or its name).", param="merchant")


def customer_list(*, merchant: Merchant | None) -> QuerySet[Customer]:
    qs = Customer.objects.select_related("merchant")
    return qs if merchant is None else qs.filter(merchant=merchant)


def customer_get(*, merchant: Merchant | None, customer_id, param: str | None = None) -> Customer:
    """`merchant=None` means staff: any merchant's customer."""
    pk = parse_uuid(customer_id, what="customer")
    if merchant is None:
        customer = customer_list(merchant=None).filter(pk=pk).first()
    else:
        # One indexed row, its merchant the one given (every request's lookup: config.rows).
        customer = next(iter(rows.select(Customer, [{"id": pk, "merchant_id": merchant.pk}])), None)
        if customer is not None:
            customer.merchant = merchant
    if customer is None:
        raise NotFound(f"No such customer: {customer_id}.", param=param)
    return customer
