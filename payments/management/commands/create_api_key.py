from django.core.management.base import BaseCommand

from payments.identity.services import api_key_create, merchant_get_or_create


class Command(BaseCommand):
    help = "Create an API key for a merchant (created on the default plan if missing). The key is the last line."

    def add_arguments(self, parser):
        parser.add_argument("--merchant", required=True, help="Merchant name")
        parser.add_argument("--live", action="store_true", help="A pd_live_ key instead of pd_test_")
        parser.add_argument("--name", default="cli", help="A label for the key")

    def handle(self, *args, merchant: str, live: bool, name: str, **options):
        merchant_obj, created = merchant_get_or_create(name=merchant)
        if created:
            self.stderr.write(f"Created merchant {merchant_obj.name} ({merchant_obj.pk}) on the default plan.")
        api_key, raw_key = api_key_create(merchant=merchant_obj, livemode=live, name=name)
        self.stderr.write(f"API key {api_key.prefix}… for {merchant_obj.name}. It is shown once; store it now.")
        self.stdout.write(raw_key)
