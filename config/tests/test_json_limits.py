"""The one JSON parser bounds what a body may be: its size and its nesting. A body that
breaks a bound is a 400 in the error shape on every endpoint, never the RecursionError
(a 500) that JSON nested about a thousand deep used to raise, in the parser or after it
(the idempotency hash, the database adapter)."""

import json
import uuid

import pytest
from django.urls import URLPattern, URLResolver, get_resolver

from config.api.parsers import MAX_DEPTH

pytestmark = pytest.mark.django_db

DEEP = "[" * 1500 + "]" * 1500  # 3 KB, past Python's recursion limit


def nested(depth: int):
    """A list `depth` levels deep (depth 1 is [])."""
    value: list = []
    for _ in range(depth - 1):
        value = [value]
    return value


def assert_400(response, *, param=None, says=None):
    assert response.status_code == 400, response.content
    assert response["Content-Type"].startswith("application/json")
    error = response.json()["error"]
    assert (error["type"], error["code"], error["param"]) == ("invalid_request_error", "invalid_request_error", param)
    if says:
        assert says in error["message"], error["message"]
    return error


def payment_body(**extra) -> dict:
    return {"order_id": f"o-{uuid.uuid4().hex[:8]}", "amount": 1000, "currency": "usd", **extra}


def post_raw(client, url, raw: str, **extra):
    return client.generic("POST", url, raw, content_type="application/json", **extra)


class TestNesting:
    @pytest.mark.parametrize("idempotency_key", [None, "deep-1"], ids=["plain", "idempotent"])
    def test_json_nested_past_the_recursion_limit_is_400(self, merchant_api, idempotency_key):
        raw = json.dumps(payment_body())[:-1] + f', "metadata": {{"x": {DEEP}}}}}'
        assert len(raw) < 4096
        headers = {"HTTP_IDEMPOTENCY_KEY": idempotency_key} if idempotency_key else {}
        assert_400(post_raw(merchant_api, "/api/v1/payments", raw, **headers), says=f"deeper than {MAX_DEPTH}")

    def test_nesting_just_past_the_bound_is_400_and_at_the_bound_parses(self, merchant_api):
        # depth counts the body object itself: {"split_instructions": <list of depth N-1>}
        at_bound = payment_body(split_instructions=nested(MAX_DEPTH - 1))
        response = merchant_api.post("/api/v1/payments", at_bound, format="json")
        assert "deeper than" not in response.content.decode()  # parsed; the serializer judges the shape
        too_deep = payment_body(split_instructions=nested(MAX_DEPTH))
        assert_400(merchant_api.post("/api/v1/payments", too_deep, format="json"), says=f"deeper than {MAX_DEPTH}")

    def test_a_deep_object_of_objects_is_400_too(self, merchant_api):
        raw = '{"a":' * 1200 + "1" + "}" * 1200
        assert_400(post_raw(merchant_api, "/api/v1/customers", raw), says="deeper than")

    def test_no_post_endpoint_answers_deep_json_with_a_500(self, merchant_api, settings):
        """Every POST route of the API, authenticated as a merchant, with ids that exist
        nowhere: whatever else it says, never a 500 and never an HTML page."""
        settings.STRIPE_WEBHOOK_SECRET = "whsec_sweep"  # else the Stripe URL is a 503 by design
        routes = list(_post_routes())
        assert len(routes) > 20
        raw = '{"customer": "' + str(uuid.uuid4()) + f'", "x": {DEEP}}}'
        for path in routes:
            response = post_raw(merchant_api, path, raw)
            assert response.status_code < 500, (path, response.content[:300])
            assert response["Content-Type"].startswith("application/json"), path


class TestSize:
    def test_body_over_djangos_upload_limit_is_400(self, merchant_api, settings):
        settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 2000
        raw = json.dumps(payment_body(description="x" * 2000))
        assert_400(post_raw(merchant_api, "/api/v1/payments", raw), says="large")

    def test_djangos_default_limit_applies(self, merchant_api):
        raw = json.dumps(payment_body(padding="x" * (3 * 1024 * 1024)))  # > 2.5 MB
        assert_400(post_raw(merchant_api, "/api/v1/payments", raw), says="large")

    def test_a_body_under_the_limit_is_parsed(self, merchant_api, settings):
        settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 2000
        response = merchant_api.post("/api/v1/customers", {"external_id": "small"}, format="json")
        assert response.status_code == 201, response.content


class TestValues:
    @pytest.mark.parametrize("constant", ["NaN", "Infinity", "-Infinity"])
    def test_non_json_numbers_are_400(self, merchant_api, constant):
        raw = json.dumps(payment_body())[:-1] + f', "metadata": {{"x": {constant}}}}}'
        assert_400(post_raw(merchant_api, "/api/v1/payments", raw))

    def test_not_utf8_is_400(self, merchant_api):
        raw = b'{"external_id": "\xff"}'
        response = merchant_api.generic("POST", "/api/v1/customers", raw, content_type="application/json")
        assert_400(response)


def _post_routes(resolver: URLResolver | None = None, prefix: str = "/"):
    """The path of every /api/ route whose view takes POST, with made-up ids filled in."""
    resolver = resolver or get_resolver()
    for pattern in resolver.url_patterns:
        route = prefix + str(pattern.pattern)
        if isinstance(pattern, URLResolver):
            yield from _post_routes(pattern, route)
            continue
        assert isinstance(pattern, URLPattern)
        view = getattr(pattern.callback, "view_class", None)
        if not route.startswith("/api/") or view is None or not hasattr(view, "post"):
            continue
        path = route
        for name in pattern.pattern.converters:
            for kind in ("uuid", "str", "int", "slug", "path"):
                path = path.replace(f"<{kind}:{name}>", str(uuid.uuid4()) if kind != "int" else "1")
        yield path.replace("^", "").replace("$", "")
