from celery import shared_task

from installments.services import installments_collect


@shared_task(acks_late=True)
def installments_collect_task(limit: int = 5000) -> dict:
    """Beat runs this every few minutes; several may run at once (SKIP LOCKED claims)."""
    totals: dict[str, int] = {}
    for counts in installments_collect(limit=limit):
        for status, count in counts.items():
            totals[status] = totals.get(status, 0) + count
    return totals
