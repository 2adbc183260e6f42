"""The dj-stripe mirror of Stripe objects, filled from verified Stripe events.

Paydesk's own handlers read what they need from the verified payload and never call
Stripe. The mirror (dj-stripe's models, its admin pages) is filled afterwards: once a
verified Stripe event is processed (or ignored: the mirror keeps every object, not
only those Paydesk acts on) and STRIPE_SECRET_KEY is set, a task syncs the event's
`data.object` into the matching dj-stripe model with `sync_from_stripe_data`. That
call needs the Stripe API (dj-stripe looks up the account owning the key and fetches
related objects it has not seen), so the task retries transient errors a few times
with backoff and then gives up with a log line. It never changes the inbound event
and never fails the webhook. With no key, nothing is enqueued.
"""

import logging
from functools import cache, partial

import stripe
from django.conf import settings
from django.db import transaction

logger = logging.getLogger("paydesk.webhooks")

# Worth retrying: the network, Stripe's rate limit, Stripe's own 5xx. Anything else (a
# bad key, an object Stripe refuses) fails the same way again.
TRANSIENT_ERRORS = (stripe.APIConnectionError, stripe.RateLimitError, stripe.APIError)

# dj-stripe models that share a Stripe object name with the primary one.
_SECONDARY_MODELS = {"UpcomingInvoice", "TransferReversal"}
_NOT_MIRRORED = {"event"}  # the event is Paydesk's InboundEvent; its object is what is mirrored


def mirror_model_for(object_name) -> type | None:
    """The dj-stripe model mirroring Stripe objects named `object_name` ("customer",
    "payment_intent", "checkout.session", ...), or None."""
    if not isinstance(object_name, str) or object_name in _NOT_MIRRORED:
        return None
    return _models_by_object_name().get(object_name)


@cache  # the model registry does not change once Django is set up
def _models_by_object_name() -> dict[str, type]:
    from django.apps import apps
    from djstripe.models.base import StripeModel

    found: dict[str, type] = {}
    for model in apps.get_app_config("djstripe").get_models():
        name = getattr(getattr(model, "stripe_class", None), "OBJECT_NAME", None)
        if issubclass(model, StripeModel) and name and model.__name__ not in _SECONDARY_MODELS:
            found.setdefault(name, model)
    return found


def _object(payload: dict) -> dict | None:
    data = payload.get("data") if isinstance(payload, dict) else None
    obj = data.get("object") if isinstance(data, dict) else None
    return obj if isinstance(obj, dict) else None


def stripe_mirror_enqueue(event) -> bool:
    """In the processing transaction: after commit, sync the event's object into the
    mirror, if a key is set, the event is a verified Stripe one, and dj-stripe mirrors
    its object. Returns whether a sync was scheduled."""
    if not settings.STRIPE_SECRET_KEY or event.provider != "stripe" or not event.signature_verified:
        return False
    obj = _object(event.payload)
    if obj is None or mirror_model_for(obj.get("object")) is None:
        return False
    from .services import enqueue
    from .tasks import stripe_mirror_sync_task

    transaction.on_commit(partial(enqueue, stripe_mirror_sync_task, str(event.pk)))
    return True


def stripe_mirror_sync(*, event_id) -> str:
    """Sync one stored event's object into dj-stripe (or delete it on `*.deleted`).
    Reads the event, never writes it. Raises what dj-stripe and stripe-python raise."""
    from .models import InboundEvent

    event = InboundEvent.objects.filter(pk=event_id).first()
    obj = _object(event.payload) if event is not None else None
    model = mirror_model_for(obj.get("object")) if obj is not None else None
    if model is None:
        return "skipped"
    with transaction.atomic():
        if event.type.endswith(".deleted"):
            model.objects.filter(id=obj.get("id")).delete()
            return "deleted"
        model.sync_from_stripe_data(obj, api_key=settings.STRIPE_SECRET_KEY)
    return "synced"
