from celery import shared_task

from payments.identity.services import subscriptions_renew


@shared_task
def subscriptions_renew_task() -> int:
    return subscriptions_renew()
