import os

from django.conf import settings
from django.core.management.base import BaseCommand
from django.db import connection

EMBEDDED, BROKER, EAGER = "embedded", "broker", "eager"


def run_mode() -> str:
    """How `make run` runs background work: `broker` (a broker is configured: a worker and
    a beat on it), `embedded` (none is: a worker with beat on the filesystem broker), or
    `eager` (CELERY_TASK_ALWAYS_EAGER set on: tasks in-process, no periodic work)."""
    if "CELERY_TASK_ALWAYS_EAGER" in os.environ and settings.CELERY_TASK_ALWAYS_EAGER:
        return EAGER
    return BROKER if settings.CELERY_BROKER_URL else EMBEDDED


def provider_note() -> str:
    """Which provider takes a payment that names none, and why: a Stripe key switches the
    default from the mock to Stripe, which nobody should learn from a real charge."""
    default = settings.DEFAULT_PAYMENT_PROVIDER
    if "DEFAULT_PAYMENT_PROVIDER" in os.environ:
        return f"Default payment provider: {default or 'none'} (DEFAULT_PAYMENT_PROVIDER)."
    if settings.STRIPE_SECRET_KEY:
        mode = "LIVE mode" if settings.STRIPE_LIVE_MODE else "test mode"
        return (
            f"STRIPE_SECRET_KEY is set, so Stripe ({mode}) is the default payment provider: a payment "
            "that names no provider goes to Stripe, not the mock. DEFAULT_PAYMENT_PROVIDER=mock keeps the mock."
        )
    if default == "mock":
        return (
            "Default payment provider: mock (a local checkout page). Setting STRIPE_SECRET_KEY makes "
            "Stripe the default."
        )
    return "Default payment provider: none, so a payment must name its provider (set DEFAULT_PAYMENT_PROVIDER)."


def database_note() -> str:
    db = settings.DATABASES["default"]
    if connection.vendor == "sqlite":
        return f"Database: SQLite ({db['NAME']}); set DATABASE_URL for PostgreSQL."
    return f"Database: {connection.display_name} ({db['NAME']} on {db.get('HOST') or 'localhost'})."


class Command(BaseCommand):
    help = (
        "What `make run` needs to know and say: prints how background work runs (embedded, broker "
        "or eager) alone on stdout, and notes on the database and the default payment provider "
        "on stderr."
    )
    requires_system_checks = []

    def handle(self, *args, **options):
        self.stderr.write(database_note())
        self.stderr.write(provider_note())
        self.stdout.write(run_mode())
