"""Beat's health: periodic_tasks_overdue (for /healthz and the dashboard) names the
enabled periodic tasks that have not run for twice their interval."""

from datetime import UTC, datetime, timedelta

import pytest
from django_celery_beat.models import CrontabSchedule, IntervalSchedule, PeriodicTask

from config.periodic import periodic_tasks_overdue

pytestmark = pytest.mark.django_db

NOW = datetime(2027, 3, 10, 12, 0, tzinfo=UTC)


@pytest.fixture(autouse=True)
def only_our_tasks():
    PeriodicTask.objects.all().delete()  # the registered ones; each test makes its own


def every(seconds: int) -> IntervalSchedule:
    return IntervalSchedule.objects.get_or_create(every=seconds, period=IntervalSchedule.SECONDS)[0]


def task(name: str, *, last_run_at=None, changed=NOW - timedelta(days=30), **schedule) -> PeriodicTask:
    created = PeriodicTask.objects.create(name=name, task=f"tasks.{name}", **schedule)
    # date_changed is auto_now: set it, and last_run_at as beat leaves it, with update().
    PeriodicTask.objects.filter(pk=created.pk).update(last_run_at=last_run_at, date_changed=changed)
    return created


def names(now=NOW) -> list[str]:
    return [t.name for t in periodic_tasks_overdue(now=now)]


def test_an_interval_task_is_overdue_once_twice_its_interval_has_passed():
    task("fresh", interval=every(60), last_run_at=NOW - timedelta(seconds=119))
    task("late", interval=every(60), last_run_at=NOW - timedelta(seconds=121))
    task("hourly", interval=every(3600), last_run_at=NOW - timedelta(minutes=90))
    overdue = periodic_tasks_overdue(now=NOW)
    assert [t.name for t in overdue] == ["late"]
    (late,) = overdue
    assert late.task == "tasks.late" and late.every == timedelta(seconds=60)
    assert late.last_run_at == NOW - timedelta(seconds=121)
    assert late.overdue_since == NOW - timedelta(seconds=1)


def test_a_task_never_run_counts_from_when_it_was_created_or_last_edited():
    task("new", interval=every(60), changed=NOW - timedelta(seconds=100))
    task("never ran", interval=every(60), changed=NOW - timedelta(minutes=5))
    overdue = periodic_tasks_overdue(now=NOW)
    assert [t.name for t in overdue] == ["never ran"] and overdue[0].last_run_at is None


def test_disabled_not_started_and_spent_one_off_tasks_are_not_late():
    long_ago = NOW - timedelta(days=1)
    task("disabled", interval=every(60), last_run_at=long_ago, enabled=False)
    task("starts tomorrow", interval=every(60), start_time=NOW + timedelta(days=1))
    spent = task("one-off, ran", interval=every(60), last_run_at=long_ago, one_off=True)
    PeriodicTask.objects.filter(pk=spent.pk).update(total_run_count=1)
    task("one-off, not yet", interval=every(60), one_off=True)
    assert names() == ["one-off, not yet"]


def test_a_crontab_task_is_overdue_when_its_second_run_since_the_last_has_passed():
    daily = CrontabSchedule.objects.create(minute="0", hour="3", timezone="UTC")
    task("nightly", crontab=daily, last_run_at=datetime(2027, 3, 8, 3, 0, 5, tzinfo=UTC))
    # Due again on the 9th at 03:00 and the 10th at 03:00: missing the first is one run late.
    assert names(now=datetime(2027, 3, 10, 2, 59, tzinfo=UTC)) == []
    (overdue,) = periodic_tasks_overdue(now=datetime(2027, 3, 10, 3, 1, tzinfo=UTC))
    assert overdue.name == "nightly" and overdue.every == timedelta(days=1)
    assert overdue.overdue_since == datetime(2027, 3, 10, 3, 0, tzinfo=UTC)


class TestHealthz:
    @pytest.fixture(autouse=True)
    def tasks_go_to_workers(self, settings):
        settings.CELERY_TASK_ALWAYS_EAGER = False  # with eager tasks nothing is expected to run beat

    def test_beat_running_everything_on_time_is_ok(self, api):
        from django.utils import timezone

        task("sweep", interval=every(60), last_run_at=timezone.now() - timedelta(seconds=30))
        body = api.get("/healthz").json()
        assert body["checks"]["beat"] == "ok" and "beat" not in body.get("degraded", [])

    def test_late_tasks_are_named_and_degraded_but_still_200(self, api):
        from django.utils import timezone

        now = timezone.now()
        task("Webhooks sweep", interval=every(60), last_run_at=now - timedelta(minutes=3))
        task("Collect due installments", interval=every(300), changed=now - timedelta(minutes=11))
        task("Ledger audit", interval=every(3600), last_run_at=now - timedelta(minutes=59))
        response = api.get("/healthz")
        assert response.status_code == 200
        body = response.json()
        assert body["status"] == "ok"
        assert body["checks"]["beat"] == "overdue: Collect due installments, Webhooks sweep"
        assert "beat" in body["degraded"] and "beat" not in body.get("failing", [])

    def test_no_beat_check_while_tasks_run_eagerly(self, api, settings):
        settings.CELERY_TASK_ALWAYS_EAGER = True
        task("late", interval=every(60), last_run_at=datetime(2020, 1, 1, tzinfo=UTC))
        assert "beat" not in api.get("/healthz").json()["checks"]
