from django.core.management.base import BaseCommand
from django.utils.dateparse import parse_datetime

from payments.services import payments_reconcile


class Command(BaseCommand):
    help = "Reconcile payments stuck in pending with their providers (also runs every 5 minutes under beat)."

    def add_arguments(self, parser):
        parser.add_argument("--now", help="Pretend it is this ISO time (for testing thresholds).")
        parser.add_argument("--limit", type=int, default=500)

    def handle(self, *args, now=None, limit=500, **options):
        when = parse_datetime(now) if now else None
        counts = payments_reconcile(now=when, limit=limit)
        for outcome, count in sorted(counts.items()):
            self.stdout.write(f"{outcome}: {count}")
        self.stdout.write(self.style.SUCCESS(f"Reconciled {sum(counts.values())} payments."))
