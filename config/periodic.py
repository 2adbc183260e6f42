"""The project's periodic tasks, declared by each app in ready() and written to
django-celery-beat's tables after every migrate (and by `seed`), so they show in admin
and run under beat's DatabaseScheduler without hand work; and the read that tells
whether beat is running them (`periodic_tasks_overdue`, for /healthz and the dashboard)."""

from dataclasses import dataclass
from datetime import datetime, timedelta

from django.db.models import Q


@dataclass(frozen=True)
class PeriodicSpec:
    name: str
    task: str
    every_seconds: int


_REGISTRY: dict[str, PeriodicSpec] = {}


def register(*, name: str, task: str, every_seconds: int) -> None:
    _REGISTRY[name] = PeriodicSpec(name=name, task=task, every_seconds=every_seconds)


def registered() -> list[PeriodicSpec]:
    return sorted(_REGISTRY.values(), key=lambda s: s.name)


def ensure_periodic_tasks(*, using: str = "default") -> int:
    """Create missing periodic tasks; leave ones staff edited (interval, enabled) alone.

    Idempotent: returns how many were created.
    """
    from django_celery_beat.models import IntervalSchedule, PeriodicTask

    created = 0
    for spec in registered():
        if PeriodicTask.objects.using(using).filter(name=spec.name).exists():
            continue
        interval, _ = IntervalSchedule.objects.using(using).get_or_create(
            every=spec.every_seconds, period=IntervalSchedule.SECONDS
        )
        PeriodicTask.objects.using(using).create(name=spec.name, task=spec.task, interval=interval)
        created += 1
    return created


@dataclass(frozen=True)
class OverdueTask:
    """An enabled periodic task that beat has not run for twice its interval."""

    name: str
    task: str
    last_run_at: datetime | None  # None: never run since it was created or last edited
    every: timedelta  # its interval (for a crontab, the gap between its next two runs)
    overdue_since: datetime  # when its second run after the last one was due


def periodic_tasks_overdue(*, now: datetime | None = None) -> list[OverdueTask]:
    """Enabled periodic tasks whose second scheduled run after their last one has passed:
    beat has not run them for twice their interval. A task never run counts from when it
    was created or last edited (as beat itself does); one before its start_time, or a
    one-off that has run, is not late. Interval and crontab schedules; clocked and solar
    ones have no interval and are left out. Ordered by name."""
    from django.utils import timezone
    from django_celery_beat.models import PeriodicTask

    now = now or timezone.now()
    tasks = (
        PeriodicTask.objects.filter(enabled=True)
        .filter(Q(interval__isnull=False) | Q(crontab__isnull=False))
        .exclude(one_off=True, total_run_count__gt=0)
        .exclude(start_time__gt=now)
        .select_related("interval", "crontab")
        .order_by("name")
    )
    overdue = []
    for task in tasks:
        since = task.last_run_at or task.date_changed
        first, second = _next_two_runs(task, after=since)
        if now > second:
            overdue.append(
                OverdueTask(
                    name=task.name,
                    task=task.task,
                    last_run_at=task.last_run_at,
                    every=second - first,
                    overdue_since=second,
                )
            )
    return overdue


def _next_two_runs(task, *, after: datetime) -> tuple[datetime, datetime]:
    if task.interval is not None:
        every = timedelta(**{task.interval.period: task.interval.every})
        return after + every, after + 2 * every
    schedule = task.crontab.schedule
    first = _crontab_next(schedule, after)
    return first, _crontab_next(schedule, first)


def _crontab_next(schedule, after: datetime) -> datetime:
    start, delta, _ = schedule.remaining_delta(after)
    return start + delta
