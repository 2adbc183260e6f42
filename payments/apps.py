from django.apps import AppConfig


class PaymentsConfig(AppConfig):
    name = "payments"

    def ready(self):
        from config import periodic
        from payments.identity import schema  # noqa: F401  (registers OpenAPI auth extensions)

        periodic.register(
            name="Renew merchant subscription quotas",
            task="payments.tasks.subscriptions_renew_task",
            every_seconds=3600,
        )
