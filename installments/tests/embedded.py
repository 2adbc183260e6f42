"""Setup for the embedded-default test (test_embedded_beat.py): one due installment with a
funded wallet, and beat told to collect every second. Made the same way in the test's
own database (in-process) and in a SQLite file (in a subprocess, `python -c` with
SQLITE_SETUP), so this module imports Django models only inside its function."""

COLLECT_TASK = "Collect due installments"

# Builds a SQLite file's schema from the models (as pytest-django's --nomigrations does:
# dj-stripe's migrations take minutes on SQLite), then makes the due installment and
# prints its id.
SQLITE_SETUP = """
import os
import django
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
django.setup()
from django.apps import apps
from django.core.management import call_command
from django.test.utils import override_settings
with override_settings(MIGRATION_MODULES={app.label: None for app in apps.get_app_configs()}):
    call_command("migrate", run_syncdb=True, verbosity=0)
from installments.tests.embedded import due_installment_create
print(due_installment_create())
"""


def due_installment_create(*, collect_every_seconds: int = 1) -> str:
    """A merchant's customer with 5,000 usd in the wallet and an order of 3 daily
    installments whose first is due today. Only installment collection stays scheduled,
    every `collect_every_seconds`, so the worker does nothing else. Returns the due
    installment's id."""
    from django.utils import timezone
    from django_celery_beat.models import IntervalSchedule, PeriodicTask

    from installments.models import Installment
    from installments.services import installment_order_create
    from payments.identity.services import customer_create, merchant_create
    from wallets.services import wallet_create, wallet_credit

    merchant = merchant_create(name="Embedded Shop")
    customer = customer_create(merchant=merchant, external_id="embedded-1")
    wallet_credit(wallet=wallet_create(customer=customer, currency="usd"), amount=5_000)
    order = installment_order_create(
        merchant=merchant,
        customer=customer,
        amount=900,
        currency="usd",
        installment_count=3,
        interval="day",
        start_date=timezone.now().date(),
    )
    every, _ = IntervalSchedule.objects.get_or_create(every=collect_every_seconds, period=IntervalSchedule.SECONDS)
    for task in PeriodicTask.objects.all():  # save(), not update(): beat is told of the change
        task.enabled = task.name == COLLECT_TASK
        if task.enabled:
            task.interval, task.crontab = every, None
        task.save()
    return str(Installment.objects.get(order=order, sequence=1).pk)
