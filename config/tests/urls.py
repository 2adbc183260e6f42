"""Test-only endpoints that raise each domain error or take money fields, so the one
exception handler and the money fields are tested for every status in API.md."""

import threading

from django.urls import include, path
from rest_framework import serializers
from rest_framework.permissions import AllowAny
from rest_framework.response import Response
from rest_framework.views import APIView

from config import errors
from config.api.fields import CurrencyField, MinorUnitsField
from config.api.idempotency import idempotent
from config.api.parsing import parse

RAISES = {
    "insufficient_funds": errors.InsufficientFunds,
    "insufficient_credits": errors.InsufficientCredits,
    "quota_exceeded": errors.QuotaExceeded,
    "conflict": errors.Conflict,
    "illegal_transition": errors.IllegalTransition,
    "not_found": errors.NotFound,
    "permission": errors.PermissionDenied,
    "provider": errors.ProviderError,
    "unavailable": errors.ServiceUnavailable,
    "boom": RuntimeError,
}


class RaiseApi(APIView):
    permission_classes = [AllowAny]

    def get(self, request, kind):
        raise RAISES[kind]("secret detail pd_test_abcdefghijklmnop" if kind == "boom" else None)


class DependencyApi(APIView):
    """Touches the cache, or sends a task straight to the broker (not through the outbox's
    best-effort enqueue): what any view that needs one of them does."""

    permission_classes = [AllowAny]
    throttle_classes: list = []

    def get(self, request, dependency):
        if dependency == "cache":
            from django.core.cache import cache

            return Response({"value": cache.get("paydesk:test")})
        from config.tasks import idempotency_keys_purge_task

        idempotency_keys_purge_task.delay()
        return Response({"sent": True})


class MoneyApi(APIView):
    permission_classes = [AllowAny]

    class Input(serializers.Serializer):
        amount = MinorUnitsField()
        currency = CurrencyField()

    def post(self, request):
        return Response(parse(self.Input, request.data))


class NestedApi(APIView):
    """Errors inside lists: a nested serializer list and a ListField of serializers."""

    permission_classes = [AllowAny]

    class Item(serializers.Serializer):
        amount = MinorUnitsField()

    def post(self, request):
        class Input(serializers.Serializer):
            rows = NestedApi.Item(many=True, required=False)
            items = serializers.ListField(child=NestedApi.Item(), required=False)

        return Response(parse(Input, request.data))


class CountedCreateApi(APIView):
    """An idempotent POST that counts how often its handler really runs, and holds still
    until the test opens `gate`, so concurrent requests with one key are sure to overlap
    it (the idempotency race test), however slow the machine."""

    executions = 0
    lock = threading.Lock()
    entered = threading.Event()
    gate = threading.Event()

    @idempotent
    def post(self, request):
        with CountedCreateApi.lock:
            CountedCreateApi.executions += 1
            execution = CountedCreateApi.executions
        CountedCreateApi.entered.set()
        CountedCreateApi.gate.wait(timeout=30)
        return Response({"execution": execution, "echo": request.data.get("n")}, status=201)


urlpatterns = [
    path("api/v1/_test/counted", CountedCreateApi.as_view()),
    path("api/v1/_test/raise/<str:kind>", RaiseApi.as_view()),
    path("api/v1/_test/money", MoneyApi.as_view()),
    path("api/v1/_test/needs/<str:dependency>", DependencyApi.as_view()),
    path("api/v1/_test/nested", NestedApi.as_view()),
    path("", include("config.urls")),
]
