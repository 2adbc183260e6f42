from celery import shared_task

from .services import credits_expire


@shared_task(acks_late=True)
def credits_expire_task() -> int:
    return credits_expire()
