from django.apps import AppConfig


class PaymentsConfig(AppConfig):
    name = "payments"

    def ready(self):
        from config import periodic
        from payments import checks, handlers  # noqa: F401  (registers system checks, inbound webhook handlers)
        from payments.identity import schema  # noqa: F401  (registers OpenAPI auth extensions)
        from payments.providers import esewa, http, khalti, mock, stripe  # noqa: F401  (registers providers)
        from webhooks.registry import register_event_types

        # A failed attempt of a payment that stays open for another (payment_attempt_failed).
        register_event_types("payment.attempt_failed")
        periodic.register(
            name="Renew merchant subscription quotas",
            task="payments.tasks.subscriptions_renew_task",
            every_seconds=3600,
        )
        periodic.register(
            name="Resolve charges whose card part could not be made",
            task="payments.tasks.charges_resolve_pending_task",
            every_seconds=120,
        )
        periodic.register(
            name="Retry refunds the provider could not be reached for",
            task="payments.tasks.refunds_resolve_pending_task",
            every_seconds=120,
        )
        periodic.register(
            name="Reconcile stuck pending payments (audit_payments)",
            task="payments.tasks.payments_reconcile_task",
            every_seconds=300,
        )
