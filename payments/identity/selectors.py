"""Reads for identity. Every lookup for an API caller is scoped to its merchant:
another merchant's object is simply not found."""

from django.db.models import QuerySet

from config.errors import NotFound
from config.ids import parse_uuid

from .models import ApiKey, Customer, Merchant


def api_key_get_active(*, key_hash: str) -> ApiKey | None:
    return ApiKey.objects.select_related("merchant").filter(key_hash=key_hash, revoked_at__isnull=True).first()


def customer_list(*, merchant: Merchant | None) -> QuerySet[Customer]:
    qs = Customer.objects.select_related("merchant")
    return qs if merchant is None else qs.filter(merchant=merchant)


def customer_get(*, merchant: Merchant | None, customer_id, param: str | None = None) -> Customer:
    """`merchant=None` means staff: any merchant's customer."""
    pk = parse_uuid(customer_id, what="customer")
    customer = customer_list(merchant=merchant).filter(pk=pk).first()
    if customer is None:
        raise NotFound(f"No such customer: {customer_id}.", param=param)
    return customer
