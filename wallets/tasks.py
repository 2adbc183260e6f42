from celery import shared_task

from . import services


@shared_task(acks_late=True)
def ledger_audit_task() -> dict:
    """Audit the whole ledger and record the result; a failure is logged as an error and
    shown in admin (Ledger audits)."""
    audit = services.ledger_audit_run(trigger="task")
    return {"audit": audit.pk, "ok": audit.ok}


@shared_task(acks_late=True)
def holds_expire_task() -> int:
    """Release pending holds past their expires_at (safe to run twice)."""
    return services.holds_expire()
