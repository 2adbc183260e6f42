from celery import shared_task

from config.api.idempotency import idempotency_keys_purge


@shared_task
def idempotency_keys_purge_task() -> int:
    return idempotency_keys_purge()


@shared_task(acks_late=True)
def csv_export_task(*, admin_label: str, query: str, user_id: int, name: str) -> dict:
    """A large admin CSV export, written to storage (config.admin_export). Safe to run twice."""
    from config.admin_export import csv_export_to_storage

    return csv_export_to_storage(admin_label=admin_label, query=query, user_id=user_id, name=name)
