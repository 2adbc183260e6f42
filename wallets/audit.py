"""The ledger audit's runs: record each, alert staff when one fails. What it checks is
wallets.selectors.ledger_audit."""

import logging
import time

from django.utils import timezone

from .models import LedgerAudit

logger = logging.getLogger("paydesk.wallets")


def ledger_audit_run(*, trigger: str) -> LedgerAudit:
    """Run the ledger audit (selectors.ledger_audit), record the result, and log an error
    when it fails so staff are alerted (the admin also shows failing audits). Never repairs."""
    from .selectors import ledger_audit

    started_at = timezone.now()
    start = time.perf_counter()
    report = ledger_audit()
    audit = LedgerAudit.objects.create(
        ok=report["ok"],
        trigger=trigger,
        report=report,
        started_at=started_at,
        duration_ms=int((time.perf_counter() - start) * 1000),
    )
    if not report["ok"]:
        logger.error(
            "ledger audit FAILED",
            extra={"audit": audit.pk, "violations": sum(len(v) for v in report["violations"].values())},
        )
    return audit
