"""The admin site: Paydesk's own sections first, grouped the way an operator looks for
things, and dj-stripe's mirror of Stripe objects last, as one collapsed section.

Installed as the default site (config.apps.PaydeskAdminConfig replaces
django.contrib.admin), so every `@admin.register` lands here unchanged. A model not
named in SECTIONS joins the section of its app (APP_SECTIONS), or, for an app not named
there either, its own section before the mirror: nothing registered ever goes missing.
"""

from functools import partial

from django.conf import settings
from django.contrib import admin
from django.urls import path

SECTIONS: list[tuple[str, list[str]]] = [
    ("Payments", ["payments.Payment", "payments.Charge", "payments.Refund", "payments.MockCheckout"]),
    ("Customers & wallets", ["payments.Customer", "wallets.Wallet", "wallets.Hold"]),
    ("Installments", ["installments.InstallmentOrder", "installments.Installment"]),
    ("Auctions", ["auctions.Auction"]),
    (
        "Credits",
        [
            "credits.CreditAccount",
            "credits.Grant",
            "credits.Debit",
            "credits.Revocation",
            "credits.CreditPack",
            "credits.StripeInvoicePayment",
        ],
    ),
    ("Webhooks", ["webhooks.InboundEvent", "webhooks.OutboundEvent", "webhooks.Delivery", "webhooks.WebhookEndpoint"]),
    ("Ledger", ["wallets.Account", "wallets.Transfer", "wallets.Entry", "wallets.LedgerAudit"]),
    (
        "Settings",
        [
            "payments.Merchant",
            "payments.ApiKey",
            "payments.Subscription",
            "payments.Region",
            "payments.Category",
            "auth.User",
            "auth.Group",
            "django_celery_beat.PeriodicTask",
            "django_celery_beat.IntervalSchedule",
            "django_celery_beat.CrontabSchedule",
            "django_celery_beat.SolarSchedule",
            "django_celery_beat.ClockedSchedule",
            "paydesk.IdempotencyKey",
            "admin.LogEntry",
        ],
    ),
]
APP_SECTIONS = {
    "payments": "Payments",
    "installments": "Installments",
    "auctions": "Auctions",
    "credits": "Credits",
    "webhooks": "Webhooks",
    "wallets": "Ledger",
    "paydesk": "Settings",
    "auth": "Settings",
    "admin": "Settings",
    "django_celery_beat": "Settings",
}
MIRROR_APPS = {"djstripe"}
MIRROR_NAME = "Stripe mirror"


def _slug(name: str) -> str:
    return "".join(c if c.isalnum() else "-" for c in name.lower()).strip("-").replace("--", "-")


class PaydeskAdminSite(admin.AdminSite):
    site_header = "Paydesk"
    site_title = "Paydesk admin"
    index_title = "Back office"
    site_url = "/"  # "View site": the landing page (config.landing)

    def get_urls(self):
        from config.admin_export import csv_export_file_view

        return [
            path(
                "files/<path:name>",
                self.admin_view(partial(csv_export_file_view, site=self)),
                name="csv_export_file",
            ),
            *super().get_urls(),
        ]

    def get_app_list(self, request, app_label=None):
        if app_label is not None:  # an app's own page (breadcrumbs): Django's list of that app
            return super().get_app_list(request, app_label)
        return self.sections(self._build_app_dict(request))

    def sections(self, app_dict: dict) -> list[dict]:
        """Django's {app_label: app} turned into the operator's sections, in order."""
        models = {}  # "app_label.ObjectName" -> (model dict, app dict)
        for app in app_dict.values():
            for model in app["models"]:
                models[f"{app['app_label']}.{model['object_name']}"] = (model, app)
        sections = {name: [] for name, _ in SECTIONS}
        for name, labels in SECTIONS:
            for label in labels:
                if label in models:
                    sections[name].append(models.pop(label)[0])
        extra_apps: dict[str, dict] = {}
        mirror: list[dict] = []
        for model, app in models.values():  # registered but not named above: keep them
            if app["app_label"] in MIRROR_APPS:
                mirror.append(model)
            elif app["app_label"] in APP_SECTIONS:
                sections[APP_SECTIONS[app["app_label"]]].append(model)
            else:
                extra_apps.setdefault(app["app_label"], {**app, "models": []})["models"].append(model)
        result = [
            {"name": name, "app_label": _slug(name), "app_url": "", "has_module_perms": True, "models": entries}
            for name, entries in sections.items()
            if entries
        ]
        result += sorted(extra_apps.values(), key=lambda a: a["name"].lower())
        if mirror:
            configured = bool(settings.STRIPE_SECRET_KEY)
            result.append(
                {
                    "name": MIRROR_NAME,
                    "app_label": "stripe-mirror",
                    "app_url": "",
                    "has_module_perms": True,
                    "models": sorted(mirror, key=lambda m: m["name"].lower()),
                    "collapsed": True,
                    "note": (
                        "dj-stripe's copy of Stripe objects, synced from Stripe."
                        if configured
                        else "dj-stripe's copy of Stripe objects; empty while STRIPE_SECRET_KEY is not set."
                    ),
                }
            )
        return result
