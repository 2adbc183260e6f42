from celery import shared_task

from payments.charges import charges_resolve_pending
from payments.identity.services import subscriptions_renew
from payments.services import payments_reconcile, refund_send, refunds_resolve_pending


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


@shared_task(acks_late=True)
def refund_send_task(refund_id: str, source: str) -> None:
    refund_send(refund_id=refund_id, source=source)  # no-op unless still pending
