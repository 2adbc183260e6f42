from django.apps import apps
from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError

from config.errors import InvalidRequest
from webhooks.listen import Listener
from webhooks.models import WebhookEndpoint
from webhooks.services import endpoint_create


class Command(BaseCommand):
    help = (
        "Receive Paydesk's webhooks locally, as `stripe listen` does Stripe's: serve on 127.0.0.1, verify each "
        "delivery's Paydesk-Signature and print the event. --merchant registers this listener as an endpoint of "
        "that merchant and prints its signing secret."
    )

    def add_arguments(self, parser):
        parser.add_argument("--port", type=int, default=3001, help="Port on 127.0.0.1 (default 3001; 0: any free one)")
        parser.add_argument(
            "--secret",
            action="append",
            default=[],
            help="A signing secret to verify with (whsec_...); repeat for several. Default: the --merchant "
            "endpoint's secret, else WEBHOOK_URLS_SECRET.",
        )
        parser.add_argument(
            "--merchant", help="Register (or reuse) an endpoint of this merchant (name or id) pointing here"
        )
        parser.add_argument(
            "--events", default="*", help="With --merchant: comma-separated event types to subscribe to (default *)"
        )
        parser.add_argument(
            "--status",
            type=int,
            default=200,
            help="Status to answer verified deliveries with (e.g. 500 to see retries)",
        )
        parser.add_argument(
            "--tolerance",
            type=int,
            default=settings.WEBHOOK_TOLERANCE_SECONDS,
            help=f"Seconds a signature's timestamp may be old (default {settings.WEBHOOK_TOLERANCE_SECONDS})",
        )

    def handle(self, *args, port, secret, merchant, events, status, tolerance, **options):
        if not 100 <= status <= 599:
            raise CommandError("--status must be an HTTP status code (100-599).")
        secrets = list(secret)
        try:
            listener = Listener(
                port=port,
                secrets=secrets,  # completed below, before the first request is served
                tolerance=tolerance,
                status=status,
                max_body=settings.WEBHOOK_MAX_BODY_BYTES,
                write=self.say,
            )
        except OSError as exc:
            raise CommandError(f"Cannot listen on 127.0.0.1:{port}: {exc}")
        try:
            if merchant:
                endpoint = self.register(merchant, url=listener.url, events=[e.strip() for e in events.split(",")])
                secrets.append(endpoint.secret)
            if not secrets and settings.WEBHOOK_URLS_SECRET:
                secrets.append(settings.WEBHOOK_URLS_SECRET)
                self.say("Verifying with WEBHOOK_URLS_SECRET: add this listener's URL to WEBHOOK_URLS.")
            if not secrets:
                raise CommandError("Nothing to verify with: pass --secret whsec_..., or --merchant to register here.")
            self.say(
                f"Ready! Listening on {listener.url}, verifying Paydesk-Signature with {len(secrets)} secret(s), "
                f"{tolerance} s tolerance; answering {status} to verified deliveries (^C to quit)."
            )
            listener.serve_forever()
        except KeyboardInterrupt:
            self.say("Stopped.")
        finally:
            listener.close()

    def register(self, name_or_id: str, *, url: str, events: list[str]) -> WebhookEndpoint:
        """An endpoint of the merchant for this URL: the one a previous run registered (same
        secret, and its retries still arrive), else a new one."""
        merchants = apps.get_model(settings.PAYDESK_MERCHANT_MODEL).objects
        found = merchants.filter(name=name_or_id).first()
        if found is None:
            try:
                found = merchants.filter(pk=name_or_id).first()
            except ValidationError:
                found = None
        if found is None:
            raise CommandError(f"No merchant named {name_or_id!r} (nor with that id).")
        endpoint = WebhookEndpoint.objects.filter(merchant=found, url=url, deleted_at__isnull=True).first()
        if endpoint is not None:
            self.say(f"Using {found.name}'s endpoint {endpoint.pk} for {url} (events: {', '.join(endpoint.events)}).")
        else:
            try:
                endpoint = endpoint_create(merchant=found, url=url, events=events, description="webhooks_listen")
            except InvalidRequest as exc:
                hint = " (set WEBHOOK_ALLOW_PRIVATE_URLS=1 to register a local URL)" if exc.param == "url" else ""
                raise CommandError(f"Could not register {url}: {exc}{hint}")
            self.say(
                f"Registered endpoint {endpoint.pk} for {found.name}: {url} (events: {', '.join(endpoint.events)})."
            )
        if not endpoint.enabled:
            self.say(f"Note: that endpoint is disabled ({endpoint.disabled_reason}); re-enable it in the admin.")
        self.say(f"Your webhook signing secret is {endpoint.secret}")
        return endpoint

    def say(self, text: str) -> None:
        self.stdout.write(text)
        self.stdout.flush()  # one block per event, as it happens, even into a pipe
