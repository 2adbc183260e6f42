from django.core.management.base import BaseCommand, CommandError
from django.utils import timezone
from django.utils.dateparse import parse_datetime
from tqdm import tqdm

from installments.models import Installment
from installments.services import installments_collect


class Command(BaseCommand):
    help = "Collect due installments now, with a progress bar. Safe to interrupt and rerun, or to run in parallel."

    def add_arguments(self, parser):
        parser.add_argument("--now", help="Collect as of this ISO time (default: now).")
        parser.add_argument("--limit", type=int, default=None, help="Stop after this many installments.")
        parser.add_argument("--chunk", type=int, default=None, help="Rows claimed per transaction.")

    def handle(self, *args, now=None, limit=None, chunk=None, **options):
        when = None
        if now:
            when = parse_datetime(now)
            if when is None:
                raise CommandError(f"--now must be an ISO date-time, not {now!r}.")
        due = Installment.objects.filter(
            status__in=["scheduled", "failed"], next_attempt_at__lte=when or timezone.now()
        ).count()
        totals: dict[str, int] = {}
        with tqdm(total=min(due, limit) if limit else due, unit="inst", file=self.stderr) as bar:
            for counts in installments_collect(now=when, limit=limit, chunk=chunk):
                for status, count in counts.items():
                    totals[status] = totals.get(status, 0) + count
                bar.update(sum(counts.values()))
        summary = ", ".join(f"{status}: {count}" for status, count in sorted(totals.items())) or "nothing due"
        self.stdout.write(self.style.SUCCESS(f"Collected: {summary}."))
