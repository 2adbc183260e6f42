from celery import shared_task

from payments.charges import charges_resolve_pending
from payments.identity.services import subscriptions_renew
from payments.services import payments_reconcile, refunds_resolve_pending


@shared_task
def subscriptions_renew_task() -> int:
    return subscriptions_renew()


@shared_task(acks_late=True)
def payments_reconcile_task() -> dict:
    return payments_reconcile()


@shared_task(acks_late=True)
def charges_resolve_pending_task() -> int:
    return charges_resolve_pending()


@shared_task(acks_late=True)
def refunds_resolve_pending_task() -> int:
    return refunds_resolve_pending()
