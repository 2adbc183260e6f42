"""GET /healthz (and /health): 200 when every configured dependency answers, else 503
naming the failing check. No auth. Database always; cache and broker when configured.

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


class HealthNote(str):
    """What a check returns to report a state that is not a failure (shown, not 503)."""


def check(name: str, *, when=lambda: True):
    """Register a health check: a function returning None when fine, or raising/returning a problem."""

    def decorator(func):
        _CHECKS.append((name, when, func))
        return func

    return decorator


@check("database")
def _database():
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")
        cursor.fetchone()


@check("cache", when=lambda: bool(settings.REDIS_URL))
def _cache():
    from django.core.cache import cache

    cache.set("paydesk:healthz", "1", 5)
    if cache.get("paydesk:healthz") != "1":
        return "cache did not return what was written"
    return None


@check("broker", when=lambda: not settings.CELERY_TASK_ALWAYS_EAGER)
def _broker():
    from config.celery import app

    with app.connection_for_write() as conn:
        conn.ensure_connection(max_retries=1, timeout=2)


def run_checks() -> tuple[bool, dict]:
    results, healthy = {}, True
    for name, when, func in _CHECKS:
        if not when():
            continue
        try:
            problem = func()
        except Exception as exc:  # a failing dependency is the answer, not an error
            logger.warning("health check failed", extra={"check": name, "problem": f"{type(exc).__name__}: {exc}"})
            healthy = False
            results[name] = f"error: {type(exc).__name__}"
            continue
        if isinstance(problem, HealthNote):
            results[name] = str(problem)
        elif problem:
            healthy = False
            results[name] = f"error: {problem}"
            logger.warning("health check failed", extra={"check": name, "problem": str(problem)})
        else:
            results[name] = "ok"
    return healthy, results


_HealthOut = inline_serializer(
    "Health",
    {
        "status": serializers.ChoiceField(choices=["ok", "error"]),
        "checks": serializers.DictField(
            child=serializers.CharField(), help_text='Check name -> "ok", a note, or "error: <kind>".'
        ),
        "failing": serializers.ListField(child=serializers.CharField(), required=False),
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
    healthy, results = run_checks()
    failing = [name for name, value in results.items() if value.startswith("error")]
    body = {"status": "ok" if healthy else "error", "checks": results}
    if failing:
        body["failing"] = failing
    return Response(body, status=200 if healthy else 503)
