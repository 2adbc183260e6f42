"""Registries that let higher layers plug into webhooks without webhooks importing them.

- Inbound handlers, by (provider, event type): domain apps register them in ready().
  A handler gets the stored InboundEvent, runs in the processing transaction, must be
  idempotent and safe out of order, and returns `Ignored("why")` when the event is not
  its business (the event is `ignored` only if every handler ignores it).
- Outbound event types: the names merchants may subscribe to.
"""

from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True)
class Ignored:
    reason: str


Handler = Callable[[object], "Ignored | None"]

_HANDLERS: dict[tuple[str, str], list[Handler]] = {}
_EVENT_TYPES: set[str] = set()


def register_handler(provider: str, *event_types: str):
    """Decorator: `@register_handler("stripe", "payment_intent.succeeded")`; provider "*"
    handles that type from any provider without a handler of its own."""

    def decorator(func: Handler) -> Handler:
        for event_type in event_types:
            handlers = _HANDLERS.setdefault((provider, event_type), [])
            if func not in handlers:
                handlers.append(func)
        return func

    return decorator


def handlers_for(provider: str, event_type: str) -> list[Handler]:
    """The provider's own handlers, else those registered for every provider ("*").
    Several apps may handle one type (a Stripe checkout may pay a payment or buy
    credits): each returns Ignored for events that are not its business."""
    return list(_HANDLERS.get((provider, event_type)) or _HANDLERS.get(("*", event_type)) or [])


def register_event_types(*event_types: str) -> None:
    _EVENT_TYPES.update(event_types)


def event_types() -> set[str]:
    return set(_EVENT_TYPES)


# API.md's outbound types; each domain app may register more.
register_event_types(
    "payment.succeeded",
    "payment.failed",
    "payment.canceled",
    "payment.refunded",
    "charge.succeeded",
    "charge.failed",
    "installment.paid",
    "installment.failed",
    "installment_order.completed",
    "installment_order.defaulted",
    "credits.granted",
    "credits.debited",
    "credits.revoked",
    "wallet.credited",
    "wallet.debited",
)
