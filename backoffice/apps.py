from django.apps import AppConfig


class BackofficeConfig(AppConfig):
    """The operator dashboard on the admin index. The top layer: it reads every app
    (payments, wallets, installments, credits, webhooks) and nothing imports it."""

    name = "backoffice"
    verbose_name = "Back office"

    def ready(self):
        from django.contrib import admin

        # The admin index shows the dashboard, then the usual list of apps and models.
        admin.site.index_template = "backoffice/index.html"
