from django.apps import AppConfig


class CreditsConfig(AppConfig):
    name = "credits"

    def ready(self):
        from config import periodic
        from credits import handlers  # noqa: F401  (registers inbound Stripe handlers)

        periodic.register(name="Expire credit grants", task="credits.tasks.credits_expire_task", every_seconds=300)
