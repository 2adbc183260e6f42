from django.apps import AppConfig


class BackofficeConfig(AppConfig):
    """The operator dashboard on the admin index. The top layer: it reads every app
    (payments, wallets, installments, credits, webhooks) and nothing imports it."""

    name = "backoffice"
    verbose_name = "Back office"
