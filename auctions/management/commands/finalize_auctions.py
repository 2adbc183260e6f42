from django.core.management.base import BaseCommand, CommandError
from django.utils import timezone
from tqdm import tqdm

from auctions.models import Auction
from auctions.services import auctions_finalize


class Command(BaseCommand):
    help = (
        "Finalize every open auction whose end has passed, with a progress bar: the winner's hold is "
        "captured to the seller, the others voided. Safe to interrupt and rerun, or to run in parallel."
    )

    def add_arguments(self, parser):
        parser.add_argument("--limit", type=int, default=None, help="Stop after this many auctions.")
        parser.add_argument("--chunk", type=int, default=None, help="Auctions looked up per round.")

    def handle(self, *args, limit=None, chunk=None, **options):
        due = Auction.objects.filter(status=Auction.Status.OPEN, ends_at__lte=timezone.now()).count()
        totals: dict[str, int] = {}
        kwargs = {"limit": limit, "source": "command"}
        if chunk:
            kwargs["chunk"] = chunk
        with tqdm(total=min(due, limit) if limit else due, unit="auction", file=self.stderr) as bar:
            for counts in auctions_finalize(**kwargs):
                for status, count in counts.items():
                    totals[status] = totals.get(status, 0) + count
                bar.update(sum(counts.values()))
        summary = ", ".join(f"{status}: {count}" for status, count in sorted(totals.items())) or "nothing to finalize"
        self.stdout.write(self.style.SUCCESS(f"Finalized: {summary}."))
        if totals.get("failed"):
            raise CommandError(f"{totals['failed']} auctions could not be finalized: see the log.")
