from celery import shared_task

from config.api.idempotency import idempotency_keys_purge


@shared_task
def idempotency_keys_purge_task() -> int:
    return idempotency_keys_purge()
