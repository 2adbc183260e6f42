from django.conf import settings
from django.core.management.base import BaseCommand
from django.utils.module_loading import autodiscover_modules

from config.seeding import SeedContext, steps


class Command(BaseCommand):
    help = "Seed reference data, periodic tasks and demo data. Idempotent: a second run changes nothing."

    def add_arguments(self, parser):
        parser.add_argument("--customers", type=int, default=5, help="Demo customers to have (default 5).")

    def handle(self, *args, customers: int, **options):
        autodiscover_modules("seeds")
        ctx = SeedContext(out=self.stdout.write, customers=customers, debug=settings.DEBUG)
        for step in steps():
            step(ctx)
        self.stdout.write(self.style.SUCCESS("Seed complete."))
