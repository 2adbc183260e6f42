"""Every dashboard figure against data whose answer is worked out by hand (seeding.py), to
the cent, for each range, currency and merchant selection."""

from datetime import UTC, datetime, timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone
from django_celery_beat.models import CrontabSchedule, IntervalSchedule, PeriodicTask

from backoffice import selectors
from backoffice.tests.seeding import seed
from wallets.models import LedgerAudit
from wallets.services import ledger_audit_run

pytestmark = pytest.mark.django_db

NOW = datetime(2026, 11, 20, 15, 30, tzinfo=UTC)  # a Friday afternoon
D = timedelta(days=1)


@pytest.fixture
def data():
    return seed(NOW)


def board(period="7d", **kwargs):
    return selectors.dashboard(period=period, now=NOW, **kwargs)


def statuses(money_in):
    return {s: (t.n, t.amount) for s, t in money_in.by_status.items() if t.n}


class TestMoneyIn:
    def test_seven_days_in_usd_for_all_merchants(self, data):
        d = board("7d", currency="usd")
        m = d.money_in
        # Collected: 2599 (today) + 10000 (2 days ago, partly refunded since) + Beta's 4000.
        assert m.gross == 16599
        # Refunds made in the range, whenever their payment was: 2500 + 5000 (of a payment 10 days old).
        assert (m.refunds, m.refund_count) == (7500, 2)
        assert m.net == 9099
        assert statuses(m) == {
            "succeeded": (2, 6599),
            "partially_refunded": (1, 10000),
            "failed": (4, 3000),
            "pending": (2, 2700),
            "canceled": (1, 300),
        }
        assert m.count == 10
        assert m.success_rate == pytest.approx(3 / 8)  # 3 collected of the 8 not pending
        assert [(r.reason, r.n, r.amount) for r in m.failed_reasons] == [
            ("card_declined", 2, 1500),
            ("", 1, 600),
            ("mock: The payment provider could not be reached.", 1, 900),
        ]
        assert (m.declined.n, m.declined.amount) == (2, 2000)
        assert [(r.reason, r.n, r.amount) for r in m.declined_reasons] == [
            ("card_declined", 1, 1200),
            ("the provider never confirmed the card part", 1, 800),
        ]

    def test_daily_volume_has_every_day_of_the_range(self, data):
        volume = board("7d", currency="usd").money_in.volume
        assert [b.date().isoformat() for b, _, _ in volume] == [f"2026-11-{day}" for day in range(14, 21)]
        assert {b.day: (collected, refunded) for b, collected, refunded in volume if collected or refunded} == {
            17: (0, 5000),
            18: (10000, 0),
            19: (4000, 2500),
            20: (2599, 0),
        }
        assert sum(c for _, c, _ in volume) == 16599 and sum(r for _, _, r in volume) == 7500

    def test_today_is_hourly_from_midnight(self, data):
        d = board("today", currency="usd")
        assert d.window.start == datetime(2026, 11, 20, tzinfo=UTC)
        assert len(d.money_in.volume) == 16  # 00:00 … 15:00
        assert {b.hour: c for b, c, _ in d.money_in.volume if c} == {14: 2599}
        assert statuses(d.money_in) == {"succeeded": (1, 2599), "failed": (2, 1500), "pending": (2, 2700)}
        assert d.money_in.refunds == 0  # today's refunds failed or are still pending

    @pytest.mark.parametrize(
        "period, gross, refunds, count",
        [("30d", 16599 + 5000, 7500, 11), ("90d", 16599 + 5000, 7500, 12)],
    )
    def test_longer_ranges(self, data, period, gross, refunds, count):
        m = board(period, currency="usd").money_in
        assert (m.gross, m.refunds, m.net, m.count) == (gross, refunds, gross - refunds, count)

    def test_one_merchant(self, data):
        m = board("7d", currency="usd", merchant_id=data.acme.pk).money_in
        assert (m.gross, m.refunds, m.count) == (12599, 7500, 8)
        assert statuses(m)["failed"] == (3, 2400)
        other = board("7d", currency="usd", merchant_id=data.beta.pk).money_in
        assert (other.gross, other.refunds, other.count) == (4000, 0, 2)

    def test_a_zero_decimal_currency(self, data):
        d = board("7d", currency="jpy")
        assert (d.money_in.gross, d.money_in.refunds, d.money_in.net) == (3599, 1000, 2599)
        assert statuses(d.money_in) == {"succeeded": (1, 2599), "refunded": (1, 1000)}
        assert d.money_in.success_rate == 1


class TestSelection:
    def test_the_busiest_currency_of_the_range_by_default_and_every_currency_listed(self, data):
        d = board("7d")
        assert d.currency == "usd"
        assert d.currencies == ["eur", "jpy", "usd"]

    def test_a_merchant_sees_its_own_currencies(self, data):
        d = board("7d", merchant_id=data.beta.pk)
        assert (d.currency, d.currencies) == ("usd", ["eur", "usd"])

    def test_a_currency_with_nothing_is_still_shown_as_chosen(self, data):
        d = board("7d", currency="gbp")
        assert d.currency == "gbp" and "gbp" in d.currencies
        assert (d.money_in.gross, d.money_in.count, d.money_held.wallets) == (0, 0, 0)

    def test_the_chosen_merchant_is_offered_even_past_the_selectors_length(self, data):
        assert [name for _, name in selectors._merchant_choices(None, limit=1)] == ["Acme"]
        assert [name for _, name in selectors._merchant_choices(data.beta, limit=1)] == ["Acme", "Beta"]

    def test_an_unknown_merchant_means_all_merchants(self, data):
        import uuid

        d = board("7d", currency="usd", merchant_id=uuid.uuid4())
        assert d.merchant is None and d.money_in.gross == 16599

    def test_no_data_at_all(self, db):
        d = selectors.dashboard(period="30d", now=NOW)
        assert d.currency == "usd" and d.money_in.gross == 0 and d.money_in.success_rate is None
        assert len(d.money_in.volume) == 30


class TestMoneyHeld:
    def test_balances_now(self, data):
        h = board("7d", currency="usd").money_held
        assert (h.wallets, h.wallet_count) == (5000 + 2000 + 1000, 3)
        assert h.held == 1500
        assert h.merchant_balances == 500
        assert h.credits_outstanding == 100 + 50 + 40 - 30
        assert (h.credits_sold, h.credit_grants_sold) == (100, 1)  # Stripe purchases in the range only

    def test_per_merchant_and_range(self, data):
        acme = board("7d", currency="usd", merchant_id=data.acme.pk).money_held
        assert (acme.wallets, acme.held, acme.merchant_balances, acme.credits_outstanding) == (7000, 1500, 500, 120)
        beta = board("30d", currency="usd", merchant_id=data.beta.pk).money_held
        assert (beta.wallets, beta.credits_outstanding, beta.credits_sold) == (1000, 40, 40)

    def test_another_currency(self, data):
        assert board("7d", currency="eur").money_held.wallets == 777


class TestInstallments:
    def test_as_of_today(self, data):
        i = board("7d", currency="usd").installments
        assert (i.due_today.n, i.due_today.amount) == (2, 1500)  # one scheduled, one being collected
        assert (i.overdue.n, i.overdue.amount) == (2, 3000)
        assert (i.failing.n, i.failing.amount) == (1, 1000)
        assert (i.defaulted.n, i.defaulted.amount, i.defaulted_orders) == (2, 600, 1)
        assert (i.expected.n, i.expected.amount) == (5, 4200)  # today to day 29: not day 30

    def test_forecast_by_week_adds_up_to_the_expected_figure(self, data):
        i = board("7d", currency="usd").installments
        today = data.today
        assert i.forecast == [
            (today, 1000 + 500 + 700),
            (today + 7 * D, 1000),
            (today + 14 * D, 0),
            (today + 21 * D, 0),
            (today + 28 * D, 1000),
        ]
        assert sum(amount for _, amount in i.forecast) == i.expected.amount

    def test_per_merchant_and_currency(self, data):
        beta = board("7d", currency="usd", merchant_id=data.beta.pk).installments
        assert (beta.overdue.n, beta.defaulted_orders, beta.expected.amount) == (0, 1, 0)
        eur = board("7d", currency="eur").installments
        assert (eur.due_today.n, eur.due_today.amount) == (1, 999)


class TestHealth:
    def test_webhooks_events_and_stuck_payments(self, data):
        h = board("7d").health
        assert (h.deliveries_retrying, h.deliveries_failed) == (2, 1)
        assert h.endpoints_disabled == 1  # a deleted endpoint is not one to re-enable
        assert h.inbound_failed == 2
        assert h.inbound_flagged == 1  # flagged among the range's events
        assert board("90d").health.inbound_flagged == 2
        assert h.stuck_pending == 1  # the one pending for 2 hours; the 5-minute-old one is not stuck
        assert h.stuck_before == NOW - timedelta(minutes=15)

    def test_the_last_ledger_audit(self, data):
        assert board().health.last_audit is None
        LedgerAudit.objects.create(ok=False, trigger="task", report={}, started_at=NOW - 2 * D, duration_ms=1)
        audit = ledger_audit_run(trigger="test")
        assert audit.ok  # everything seeded through the wallets services adds up
        last = board().health.last_audit
        assert (last.pk, last.ok) == (audit.pk, True)

    def test_periodic_tasks_late_for_their_schedule(self, db):
        PeriodicTask.objects.all().delete()
        minute = IntervalSchedule.objects.create(every=60, period=IntervalSchedule.SECONDS)
        hourly = IntervalSchedule.objects.create(every=1, period=IntervalSchedule.HOURS)
        at_three = CrontabSchedule.objects.create(minute="0", hour="3", timezone="UTC")
        on_the_hour = CrontabSchedule.objects.create(minute="0", hour="*", timezone="UTC")

        def task(name, last_run_at, **schedule):
            row = PeriodicTask.objects.create(name=name, task="x", **schedule)
            PeriodicTask.objects.filter(pk=row.pk).update(
                last_run_at=last_run_at
            )  # save() would clear it when disabled

        task("sweep, just ran", NOW - timedelta(seconds=30), interval=minute)
        task("sweep, missed two runs", NOW - timedelta(minutes=3), interval=minute)
        task("sweep, stopped", NOW - timedelta(minutes=10), interval=minute)
        task("audit, late", NOW - timedelta(hours=3), interval=hourly)
        task("audit, paused", NOW - timedelta(hours=3), interval=hourly, enabled=False)
        task("nightly, ran last night", NOW - timedelta(hours=12, minutes=30), crontab=at_three)
        task("nightly, missed one night", NOW - timedelta(days=1, hours=12, minutes=30), crontab=at_three)
        task("nightly, missed two nights", NOW - timedelta(days=2, hours=12, minutes=30), crontab=at_three)
        task("hourly cron, ran at 15:00", NOW - timedelta(minutes=30), crontab=on_the_hour)
        tasks = {t.name: t for t in selectors.periodic_tasks(now=NOW)}
        # config.periodic's one rule, as /healthz: late once its second run is past.
        assert {name for name, t in tasks.items() if t.overdue} == {
            "sweep, missed two runs",
            "sweep, stopped",
            "audit, late",
            "nightly, missed two nights",
        }
        assert tasks["sweep, just ran"].due_at == NOW + timedelta(seconds=30)
        assert tasks["audit, paused"].due_at is None and not tasks["audit, paused"].enabled
        assert timezone.localtime(tasks["nightly, ran last night"].due_at) == datetime(2026, 11, 21, 3, tzinfo=UTC)
        assert tasks["hourly cron, ran at 15:00"].due_at == datetime(2026, 11, 20, 16, tzinfo=UTC)

    def test_a_task_that_never_ran_is_late_counting_from_when_it_was_set_up(self, db):
        PeriodicTask.objects.all().delete()
        minute = IntervalSchedule.objects.create(every=60, period=IntervalSchedule.SECONDS)
        row = PeriodicTask.objects.create(name="new", task="x", interval=minute)
        PeriodicTask.objects.filter(pk=row.pk).update(date_changed=NOW - timedelta(minutes=2))
        assert not selectors.periodic_tasks(now=NOW)[0].overdue
        PeriodicTask.objects.filter(pk=row.pk).update(date_changed=NOW - timedelta(hours=1))
        assert selectors.periodic_tasks(now=NOW)[0].overdue


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_the_figures_are_read_from_one_read_only_snapshot():
    with CaptureQueriesContext(connection) as queries:
        d = selectors.dashboard(period="7d", now=NOW)
    sql = [q["sql"] for q in queries.captured_queries]
    assert sql[0] == "BEGIN" and sql[-1] == "COMMIT"
    assert sql[1] == "SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY; SET LOCAL jit = off"
    assert d.money_in.count == 0
