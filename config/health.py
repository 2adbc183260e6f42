"""GET /healthz (and /health): 200 when the service can serve, else 503 naming the failing
check. No auth. Database always; cache, broker and beat when configured.

A required check (the database) failing makes it 503, listed under "failing". The cache
and the broker are not required: with the cache down the throttles count in each
process's memory (config.api.throttling), and with the broker down committed outbox rows
wait for the sweep (webhooks.services.enqueue), so payments go on. Their outage is
reported as "unavailable" and listed under "degraded", with 200: a 503 here takes web
processes out of the load balancer (readiness) or restarts them (liveness), all of them
at once for one Redis outage, which would stop the very payments that can still be taken,
and restarting would not bring Redis back. Alert on "degraded" to hear of it.

Beat is judged by what it leaves in the database: when tasks go to workers, "beat" is
degraded while any enabled periodic task has not run for twice its interval
(config.periodic.periodic_tasks_overdue), and its value names those tasks.

The answer is public, so a failing check shows the kind of error only; the detail (host
names, database names) goes to the log."""

import logging

from django.conf import settings
from django.db import connection
from drf_spectacular.utils import extend_schema, inline_serializer
from rest_framework import serializers
from rest_framework.decorators import (
    api_view,
    authentication_classes,
    permission_classes,
    renderer_classes,
    throttle_classes,
)
from rest_framework.permissions import AllowAny
from rest_framework.renderers import JSONRenderer
from rest_framework.response import Response

logger = logging.getLogger("paydesk.health")

_CHECKS = []
UNAVAILABLE = "unavailable"  # what a check that is not required shows when it fails


class HealthNote(str):
    """What a check returns to report a state that is not a failure (shown, not 503)."""


class Degraded(str):
    """What a check that is not required returns to report a problem in its own words
    (shown as its value and listed under "degraded", with 200) rather than "unavailable".
    For what is safe to show the public: no host names, no secrets."""


def check(name: str, *, when=lambda: True, required: bool = True):
    """Register a health check: a function returning None when fine, or raising/returning a
    problem. A problem with a check that is not `required` is shown as "unavailable" and
    keeps the answer 200 (degraded), see the module docstring."""

    def decorator(func):
        _CHECKS.append((name, when, required, func))
        return func

    return decorator


@check("database")
def _database():
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")
        cursor.fetchone()


@check("cache", when=lambda: bool(settings.REDIS_URL), required=False)
def _cache():
    from django.core.cache import cache

    cache.set("paydesk:healthz", "1", 5)
    if cache.get("paydesk:healthz") != "1":
        return "cache did not return what was written"
    return None


@check("broker", when=lambda: not settings.CELERY_TASK_ALWAYS_EAGER, required=False)
def _broker():
    from config.celery import app

    with app.connection_for_write() as conn:
        conn.ensure_connection(max_retries=1, timeout=2)


@check("beat", when=lambda: not settings.CELERY_TASK_ALWAYS_EAGER, required=False)
def _beat():
    """With tasks going to workers, beat must be running the periodic tasks (with eager
    tasks nothing is expected to). Late ones are named: what is late says what is not
    being done (installments not collected, webhooks not retried)."""
    from django.utils import timezone

    from config.periodic import periodic_tasks_overdue

    overdue = periodic_tasks_overdue(now=timezone.now())
    if overdue:
        return Degraded("overdue: " + ", ".join(task.name for task in overdue))
    return None


def run_checks() -> tuple[bool, dict]:
    """Run every configured check. Returns (serving, results): serving is False when a
    required check failed; results maps each check to "ok", a note, "unavailable" or a
    `Degraded` value (a check that is not required failed), or "error: <kind>" (a
    required one failed). `is_degraded(value)` tells the degraded ones."""
    results, serving = {}, True
    for name, when, required, func in _CHECKS:
        if not when():
            continue
        try:
            problem = func()
        except Exception as exc:  # a failing dependency is the answer, not an error
            problem = f"{type(exc).__name__}: {exc}"
            shown = f"error: {type(exc).__name__}"
        else:
            if isinstance(problem, HealthNote):
                results[name] = str(problem)
                continue
            shown = f"error: {problem}"
        if not problem:
            results[name] = "ok"
            continue
        logger.warning("health check failed", extra={"check": name, "problem": str(problem), "required": required})
        if required:
            serving = False
            results[name] = shown
        else:
            results[name] = problem if isinstance(problem, Degraded) else Degraded(UNAVAILABLE)
    return serving, results


def is_degraded(value: str) -> bool:
    return isinstance(value, Degraded)


_HealthOut = inline_serializer(
    "Health",
    {
        "status": serializers.ChoiceField(choices=["ok", "error"]),
        "checks": serializers.DictField(
            child=serializers.CharField(), help_text='Check name -> "ok", a note, or "error: <kind>".'
        ),
        "failing": serializers.ListField(
            child=serializers.CharField(), required=False, help_text="Required checks that failed (then 503)."
        ),
        "degraded": serializers.ListField(
            child=serializers.CharField(),
            required=False,
            help_text="Dependencies that are unavailable while the service still serves (200).",
        ),
    },
)


@extend_schema(
    summary="Health of the service and its dependencies",
    responses={200: _HealthOut, 503: _HealthOut},
    auth=[],
    tags=["health"],
)
@api_view(["GET"])
@authentication_classes([])
@permission_classes([AllowAny])
@throttle_classes([])
@renderer_classes([JSONRenderer])
def healthz(request):
    serving, results = run_checks()
    failing = [name for name, value in results.items() if value.startswith("error")]
    degraded = [name for name, value in results.items() if is_degraded(value)]
    body = {"status": "ok" if serving else "error", "checks": results}
    if failing:
        body["failing"] = failing
    if degraded:
        body["degraded"] = degraded
    return Response(body, status=200 if serving else 503)
