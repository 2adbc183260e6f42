from django.conf import settings
from django.core.management.base import BaseCommand
from django.utils.module_loading import autodiscover_modules

from config.seeding import SeedContext, steps


class Command(BaseCommand):
    help = (
        "Seed reference data and periodic tasks; with DEBUG on (or --demo) also demo data: a demo "
        "merchant, its API key and customers. Idempotent: a second run changes nothing."
    )

    def add_arguments(self, parser):
        parser.add_argument("--customers", type=int, default=5, help="Demo customers to have (default 5).")
        parser.add_argument(
            "--demo",
            action="store_true",
            help="Create the demo merchant, key and customers even with DEBUG off (never in production).",
        )

    def handle(self, *args, customers: int, demo: bool, **options):
        autodiscover_modules("seeds")
        ctx = SeedContext(out=self.stdout.write, customers=customers, debug=settings.DEBUG, demo=demo)
        for step in steps():
            step(ctx)
        self.stdout.write(self.style.SUCCESS("Seed complete."))
