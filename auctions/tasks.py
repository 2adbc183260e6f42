from celery import shared_task

from .services import auctions_finalize


@shared_task(acks_late=True)
def auctions_finalize_task() -> dict:
    """Beat runs this every minute: finalize every open auction whose end has passed.
    Safe to run twice or in parallel (each auction is claimed with SKIP LOCKED and
    finalized once)."""
    totals: dict[str, int] = {}
    for counts in auctions_finalize(source="task"):
        for status, count in counts.items():
            totals[status] = totals.get(status, 0) + count
    return totals
