"""Inbound Stripe events that grant or revoke credits (registered in CreditsConfig.ready()).

Handlers read only the verified payload (never call Stripe), run in the webhook
processing transaction, and are idempotent: grants are unique per (Stripe event id,
invoice line) and per Checkout Session whatever the event id, refund revocations per
(event id, grant) and cumulative. An event that does not map to a customer or a pack
returns Ignored with the reason: the event is stored `ignored` with it, visible to
staff in admin, never a 500. An invoice whose
lines the event does not all carry is never granted in part: the event fails with the
reason (IncompleteInvoice), for staff to grant by hand.
"""

import uuid

from django.db.models import Q

from payments.identity.models import Customer
from webhooks.registry import Ignored, register_handler

from .models import Grant, StripeInvoicePayment
from .selectors import pack_for_price
from .services import credits_grant, credits_revoke_refunded


def _customer_by_id(value) -> Customer | None:
    try:
        pk = uuid.UUID(str(value))
    except ValueError:
        return None
    return Customer.objects.filter(pk=pk).first()


def _positive_int(value) -> int | None:
    try:
        number = int(str(value).strip())
    except (TypeError, ValueError):
        return None
    return number if number > 0 else None


@register_handler("stripe", "checkout.session.completed")
def checkout_completed(event):
    obj = event.payload["data"]["object"]
    metadata = obj.get("metadata") or {}
    if "credits" not in metadata:
        return Ignored("credits: the checkout session has no metadata.credits.")
    if obj.get("payment_status") != "paid":
        return Ignored(f"credits: payment_status is {obj.get('payment_status')!r}, not paid.")
    if obj.get("mode") == "subscription":
        return Ignored("credits: a subscription checkout's credits are granted by its invoice.paid.")
    units = _positive_int(metadata.get("credits"))
    if units is None:
        return Ignored(f"credits: metadata.credits {metadata.get('credits')!r} is not a positive integer.")
    reference = metadata.get("paydesk_customer") or obj.get("client_reference_id")
    customer = _customer_by_id(reference) if reference else None
    if customer is None:
        return Ignored(f"credits: no Paydesk customer {reference!r} (metadata.paydesk_customer/client_reference_id).")
    pack = None
    if metadata.get("pack"):
        pack = customer.merchant.credit_packs.filter(code=metadata["pack"]).first()
    session = obj.get("id") or None
    grant, created = credits_grant(
        customer=customer,
        units=units,
        source=Grant.Source.STRIPE_CHECKOUT,
        reason=f"Stripe checkout {obj.get('id', '')}",
        pack=pack,
        stripe_event_id=event.event_id,
        stripe_object_id=obj.get("id") or "",
        stripe_checkout_session=session,
        stripe_payment_intent=obj.get("payment_intent") or "",
        stripe_invoice=obj["invoice"] if isinstance(obj.get("invoice"), str) else "",
    )
    if not created and grant.stripe_event_id != event.event_id:
        if session and grant.stripe_checkout_session == session:
            return Ignored(f"credits: checkout session {session} was already granted by event {grant.stripe_event_id}.")
        return Ignored(f"credits: invoice {obj.get('invoice')} was already granted by event {grant.stripe_event_id}.")
    return None


def _line_price(line: dict) -> str:
    """The line's price id: `pricing.price_details.price` (API 2025-03-31 and later) or
    `price.id` (older versions, still sent to accounts pinned to them)."""
    details = (line.get("pricing") or {}).get("price_details") or {}
    price = details.get("price")
    if isinstance(price, dict):
        price = price.get("id")
    if not price:
        legacy = line.get("price")
        price = legacy.get("id") if isinstance(legacy, dict) else legacy
    return price or ""


class IncompleteInvoice(Exception):
    """The event lists only the first lines of the invoice (lines.has_more)."""


def _id(value) -> str:
    """A Stripe reference, whether sent as an id or as an expanded object."""
    if isinstance(value, dict):
        value = value.get("id")
    return value if isinstance(value, str) else ""


def _invoice_payments(obj: dict) -> list[tuple[str, str]]:
    """(payment intent, charge) pairs that paid the invoice, as far as the payload says:
    `payment_intent` / `charge` (API versions before 2025-03-31), `payments` (later
    versions, when expanded)."""
    pairs = []
    if _id(obj.get("payment_intent")) or _id(obj.get("charge")):
        pairs.append((_id(obj.get("payment_intent")), _id(obj.get("charge"))))
    for payment in (obj.get("payments") or {}).get("data") or []:
        paid_by = payment.get("payment") or {}
        if _id(paid_by.get("payment_intent")) or _id(paid_by.get("charge")):
            pairs.append((_id(paid_by.get("payment_intent")), _id(paid_by.get("charge"))))
    return pairs


def _link_invoice_payments(*, invoice: str, pairs: list[tuple[str, str]], event_id: str) -> None:
    for intent, charge in pairs:
        StripeInvoicePayment.objects.get_or_create(
            invoice=invoice, payment_intent=intent, charge=charge, defaults={"stripe_event_id": event_id}
        )


@register_handler("stripe", "invoice.paid")
def invoice_paid(event):
    obj = event.payload["data"]["object"]
    stripe_customer = obj.get("customer")
    if isinstance(stripe_customer, dict):
        stripe_customer = stripe_customer.get("id")
    listed = obj.get("lines") or {}
    lines = listed.get("data") or []
    mapped = [(line, pack_for_price(price_id=_line_price(line))) for line in lines]
    mapped = [(line, pack) for line, pack in mapped if pack is not None]
    if not mapped:
        prices = ", ".join(sorted({_line_price(line) or "?" for line in lines})) or "none"
        unseen = (
            f"; only its first {len(lines)} lines were in the event (lines.has_more)" if listed.get("has_more") else ""
        )
        return Ignored(f"credits: no credit pack for the invoice's prices ({prices}){unseen}.")
    if listed.get("has_more"):
        # Stripe puts only the first lines of an invoice in its events. Granting those
        # would under-grant without a trace; the rest cannot be fetched here (handlers
        # never call Stripe). Fail loudly instead: the event shows as failed, with this.
        raise IncompleteInvoice(
            f"credits: invoice {obj.get('id')} has more lines than the {len(lines)} in this event "
            "(lines.has_more), so nothing was granted. Check the invoice in the Stripe dashboard and "
            "grant its credits by hand (admin: Credits > Grants)."
        )
    customer = Customer.objects.filter(stripe_customer_id=stripe_customer).first() if stripe_customer else None
    if customer is None:
        return Ignored(f"credits: no Paydesk customer with Stripe customer {stripe_customer!r}.")
    pairs = _invoice_payments(obj)
    if obj.get("id"):
        _link_invoice_payments(invoice=obj["id"], pairs=pairs, event_id=event.event_id)
    intent = next((i for i, _ in pairs if i), "")
    granted = 0
    for index, (line, pack) in enumerate(mapped):
        if pack.merchant_id != customer.merchant_id:
            continue
        quantity = _positive_int(line.get("quantity") or 1) or 1
        grant, created = credits_grant(
            customer=customer,
            units=pack.credits * quantity,
            source=Grant.Source.STRIPE_INVOICE,
            reason=f"Stripe invoice {obj.get('id', '')}: {quantity} × {pack.code}",
            pack=pack,
            stripe_event_id=event.event_id,
            stripe_line=line.get("id") or f"line-{index}",
            stripe_object_id=obj.get("id") or "",
            stripe_payment_intent=intent,
            stripe_invoice=obj.get("id") or "",
        )
        if not created and grant.stripe_event_id != event.event_id:
            return Ignored(f"credits: invoice {obj.get('id')} was already granted by event {grant.stripe_event_id}.")
        granted += 1
    if not granted:
        return Ignored("credits: the invoice's packs belong to another merchant than its customer.")
    return None


@register_handler("stripe", "invoice_payment.paid")
def invoice_payment_paid(event):
    """API 2025-03-31 and later: which PaymentIntent (or charge) paid which invoice, the
    only place those versions say so. Kept whatever the order of events."""
    obj = event.payload["data"]["object"]
    invoice = _id(obj.get("invoice"))
    paid_by = obj.get("payment") or {}
    intent, charge = _id(paid_by.get("payment_intent")), _id(paid_by.get("charge"))
    if not invoice or not (intent or charge):
        return Ignored("credits: the invoice payment names no invoice, payment intent or charge.")
    _link_invoice_payments(invoice=invoice, pairs=[(intent, charge)], event_id=event.event_id)
    if not Grant.objects.filter(stripe_invoice=invoice).exists():
        return Ignored(f"credits: invoice {invoice} granted no credits (yet); its payment is noted for refunds.")
    return None


def _refunded_grants(obj: dict) -> list[Grant]:
    """The grants the refunded charge bought: by its PaymentIntent (checkout sessions),
    and by the invoice it paid: named on the charge (API versions before 2025-03-31) or
    linked to its PaymentIntent or id by an invoice payment."""
    intent, charge = _id(obj.get("payment_intent")), _id(obj.get("id"))
    invoices = {_id(obj.get("invoice"))} - {""}
    paid = (Q(payment_intent=intent) if intent else Q()) | (Q(charge=charge) if charge else Q())
    if paid:
        invoices |= set(StripeInvoicePayment.objects.filter(paid).values_list("invoice", flat=True))
    match = Q(stripe_payment_intent=intent) if intent else Q()
    if invoices:
        match |= Q(stripe_invoice__in=invoices)
    if not match:
        return []
    return list(Grant.objects.filter(match, stripe_event_id__isnull=False).select_related("customer").order_by("pk"))


@register_handler("stripe", "charge.refunded")
def charge_refunded(event):
    obj = event.payload["data"]["object"]
    grants = _refunded_grants(obj)
    if not grants:
        return Ignored("credits: the refunded charge did not buy credits.")
    amount = int(obj.get("amount") or 0)
    refunded = int(obj.get("amount_refunded") or 0)
    for grant in grants:
        if obj.get("refunded") or amount <= 0 or refunded >= amount:
            units = grant.units
        else:
            units = grant.units * refunded // amount  # a partial refund revokes its share, rounded down
        if units > 0:
            credits_revoke_refunded(grant=grant, refunded_units=units, stripe_event_id=event.event_id)
    return None
