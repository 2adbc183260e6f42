from celery import shared_task
from django.conf import settings

from installments.services import installments_collect


@shared_task(acks_late=True)
def installments_collect_task(budget_seconds: float | None = None) -> dict:
    """Beat runs this every few minutes; several may run at once (SKIP LOCKED claims).
    Collects chunk after chunk until nothing is due or the time budget
    (INSTALLMENT_COLLECT_BUDGET_SECONDS) is spent; the next run resumes."""
    budget = budget_seconds or settings.INSTALLMENT_COLLECT_BUDGET_SECONDS
    totals: dict[str, int] = {}
    for counts in installments_collect(budget_seconds=budget):
        for status, count in counts.items():
            totals[status] = totals.get(status, 0) + count
    return totals
