"""The project's periodic tasks, declared by each app in ready() and written to
django-celery-beat's tables after every migrate (and by `seed`), so they show in admin
and run under beat's DatabaseScheduler without hand work."""

from dataclasses import dataclass


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
