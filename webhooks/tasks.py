import logging
import random

from celery import shared_task

from . import mirror, services

logger = logging.getLogger("paydesk.webhooks")


@shared_task(bind=True, acks_late=True, max_retries=None)
def inbound_event_process_task(self, event_id: str) -> str:
    try:
        return services.inbound_event_process(event_id=event_id)
    except services.HandlerFailed as exc:
        if self.request.is_eager or exc.retry_in is None:
            # Eager (no broker) a retry would run inline at once, inside the provider's
            # request: acknowledge instead and leave the event `failed`, with its next try
            # recorded, for the sweep or staff. Schedule used up: staff re-run it.
            return "failed"
        # The schedule (WEBHOOK_INBOUND_RETRY_SCHEDULE) is counted on the event, not here;
        # the sweep re-enqueues it too if this message is lost.
        raise self.retry(exc=exc, countdown=exc.retry_in)


@shared_task(acks_late=True)
def delivery_attempt_task(delivery_id: str) -> str | None:
    return services.delivery_attempt(delivery_id=delivery_id)


@shared_task
def webhooks_sweep_task() -> dict:
    """Enqueue due deliveries and stranded inbound events, so nothing waits on a lost
    task message or a worker that died mid-delivery. First, bring the operator endpoints
    in line with WEBHOOK_URLS (services.global_endpoints_sync), and release deliveries held
    for an endpoint that is enabled again (services.deliveries_release_held)."""
    services.global_endpoints_sync()
    services.deliveries_release_held()
    deliveries = services.deliveries_due_ids()
    for delivery_id in deliveries:
        services.enqueue(delivery_attempt_task, delivery_id)
    inbound = services.stale_inbound_ids()
    for event_id in inbound:
        services.enqueue(inbound_event_process_task, event_id)
    return {"deliveries": len(deliveries), "inbound": len(inbound)}


MIRROR_RETRY_BASE_SECONDS = 30  # then ×4: about 30 s, 2 min, 8 min


@shared_task(bind=True, acks_late=True, max_retries=3)
def stripe_mirror_sync_task(self, event_id: str) -> str:
    """Sync a processed Stripe event's object into dj-stripe (webhooks.mirror). Fails soft:
    transient errors are retried with backoff, then it gives up with a log line; nothing
    here touches the inbound event. Eager (no broker) it does not retry inline."""
    try:
        return mirror.stripe_mirror_sync(event_id=event_id)
    except mirror.TRANSIENT_ERRORS as exc:
        if not self.request.is_eager and self.request.retries < self.max_retries:
            countdown = MIRROR_RETRY_BASE_SECONDS * 4**self.request.retries * random.uniform(0.8, 1.2)
            raise self.retry(exc=exc, countdown=countdown)
        reason = exc
    except Exception as exc:  # a bad key, an object Stripe refuses: the same again next time
        reason = exc
    logger.warning(
        "stripe mirror sync gave up",
        extra={"inbound_event": event_id, "attempts": self.request.retries + 1, "error": repr(reason)[:500]},
    )
    return "gave-up"
