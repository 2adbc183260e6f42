from django.core.management.base import BaseCommand, CommandError

from wallets.selectors import ledger_audit_format
from wallets.services import ledger_audit_run


class Command(BaseCommand):
    help = "Check every ledger invariant (set-based SQL), print a report, record it; exit 1 on any violation."

    def handle(self, *args, **options):
        audit = ledger_audit_run(trigger="command")
        text = ledger_audit_format(audit.report)
        if not audit.ok:
            self.stderr.write(text)
            raise CommandError("ledger audit failed", returncode=1)
        self.stdout.write(text)
