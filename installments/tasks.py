from celery import shared_task
from django.conf import settings

from installments.services import installments_collect

# Below CELERY_TASK_SOFT_TIME_LIMIT (240 s by default), so a run ends between chunks on
# its own rather than being interrupted inside one.
DEFAULT_BUDGET_SECONDS = 200


@shared_task(acks_late=True)
def installments_collect_task(budget_seconds: float | None = None) -> dict:
    """Beat runs this every few minutes; several may run at once (SKIP LOCKED claims).
    Collects chunk after chunk until nothing is due or the time budget
    (INSTALLMENT_COLLECT_BUDGET_SECONDS) is spent; the next run resumes."""
    budget = budget_seconds or getattr(settings, "INSTALLMENT_COLLECT_BUDGET_SECONDS", DEFAULT_BUDGET_SECONDS)
    totals: dict[str, int] = {}
    for counts in installments_collect(budget_seconds=budget):
        for status, count in counts.items():
            totals[status] = totals.get(status, 0) + count
    return totals
