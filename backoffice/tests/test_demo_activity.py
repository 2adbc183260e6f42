"""`manage.py demo_activity`: made-up business through the real services, once."""

import pytest
from django.core.management import CommandError, call_command
from django.utils import timezone

from backoffice import selectors
from backoffice.management.commands import demo_activity
from payments.models import Payment, Refund
from wallets.models import LedgerAudit

pytestmark = pytest.mark.django_db


def test_it_fills_every_part_of_the_dashboard_and_the_ledger_still_adds_up(monkeypatch):
    """At noon today, the clock stopped: with six days of activity its made-up moments,
    drawn from one seed, depend on the time of day (run at 03:05 UTC it made no refund
    that succeeded, and this test failed)."""
    noon = timezone.localtime().replace(hour=12, minute=0, second=0, microsecond=0)
    monkeypatch.setattr(timezone, "now", lambda: noon)
    monkeypatch.setattr(demo_activity, "DAYS", 6)
    call_command("demo_activity", "--force")
    assert LedgerAudit.objects.get().ok
    d = selectors.dashboard(period="7d", currency="usd")
    assert d.money_in.gross > 0 and d.money_in.by_status["failed"].n > 0
    assert d.money_held.wallets > 0 and d.money_held.held == 1500 and d.money_held.credits_sold > 0
    assert d.installments.expected.amount > 0
    assert d.health.deliveries_retrying == 3 and d.health.deliveries_failed == 2 and d.health.tasks_overdue == 1
    assert set(d.currencies) >= {"usd", "eur", "jpy"}
    assert Refund.objects.filter(status="succeeded").exists()

    payments = Payment.objects.count()
    call_command("demo_activity", "--force")  # a second run adds nothing
    assert Payment.objects.count() == payments


def test_not_on_a_production_database(settings):
    settings.DEBUG = False
    with pytest.raises(CommandError, match="DEBUG only"):
        call_command("demo_activity")
