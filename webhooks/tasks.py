from celery import shared_task

from . import services


@shared_task(bind=True, acks_late=True, max_retries=8)
def inbound_event_process_task(self, event_id: str) -> str:
    try:
        return services.inbound_event_process(event_id=event_id)
    except services.HandlerFailed as exc:
        # Exponential backoff with jitter: ~1 s, 2 s, 4 s ... then staff re-run from admin.
        raise self.retry(exc=exc, countdown=min(2**self.request.retries, 600))


@shared_task(acks_late=True)
def delivery_attempt_task(delivery_id: str) -> str | None:
    return services.delivery_attempt(delivery_id=delivery_id)


@shared_task
def webhooks_sweep_task() -> dict:
    """Enqueue due deliveries and stranded inbound events, so nothing waits on a lost
    task message or a worker that died mid-delivery."""
    deliveries = services.deliveries_due_ids()
    for delivery_id in deliveries:
        services.enqueue(delivery_attempt_task, delivery_id)
    inbound = services.stale_inbound_ids()
    for event_id in inbound:
        services.enqueue(inbound_event_process_task, event_id)
    return {"deliveries": len(deliveries), "inbound": len(inbound)}
