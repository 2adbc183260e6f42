from django.apps import AppConfig


class WebhooksConfig(AppConfig):
    name = "webhooks"

    def ready(self):
        from config import periodic
        from config.health import HealthNote, check

        periodic.register(
            name="Webhooks sweep (due deliveries, stranded inbound events)",
            task="webhooks.tasks.webhooks_sweep_task",
            every_seconds=60,
        )

        @check("stripe_webhook")
        def stripe_webhook_secret():
            from django.conf import settings

            if settings.STRIPE_WEBHOOK_SECRET:
                return None
            if settings.DEBUG:
                return HealthNote("unverified: STRIPE_WEBHOOK_SECRET not set (accepted because DEBUG is on)")
            return HealthNote("disabled: STRIPE_WEBHOOK_SECRET not set, Stripe events are refused")
