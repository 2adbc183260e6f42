import pytest

pytestmark = pytest.mark.django_db


@pytest.mark.parametrize("url", ["/healthz", "/health"])
def test_healthy(api, url):
    response = api.get(url)
    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "ok" and body["checks"]["database"] == "ok"
    assert "failing" not in body


def _dead_redis_cache(settings):
    settings.REDIS_URL = "redis://127.0.0.1:1/0"
    settings.CACHES = {
        "default": {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": settings.REDIS_URL}
    }


def test_unreachable_cache_is_named_but_still_200_degraded(api, settings):
    """The API serves without the cache (throttles count in memory), so a cache outage
    must not take every web process out of the load balancer: 200, cache named."""
    _dead_redis_cache(settings)
    response = api.get("/healthz")
    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "ok" and body["checks"]["database"] == "ok"
    assert body["checks"]["cache"] == "unavailable"
    assert body["degraded"] == ["cache"] and "failing" not in body


def test_database_down_is_503_even_with_the_cache_down_too(api, settings, monkeypatch):
    from django.db import connection

    _dead_redis_cache(settings)

    def broken_cursor(*args, **kwargs):
        raise RuntimeError("database is down")

    monkeypatch.setattr(connection, "cursor", broken_cursor)
    response = api.get("/healthz")
    assert response.status_code == 503
    body = response.json()
    assert body["status"] == "error" and body["failing"] == ["database"] and body["degraded"] == ["cache"]


def test_broken_database_is_503_naming_it(api, monkeypatch):
    from django.db import connection

    def broken_cursor(*args, **kwargs):
        raise RuntimeError("database is down")

    monkeypatch.setattr(connection, "cursor", broken_cursor)
    response = api.get("/healthz")
    assert response.status_code == 503
    assert response.json()["failing"] == ["database"]


def test_unreachable_broker_is_named_but_still_200_degraded(api, settings):
    """Committed outbox rows wait for the sweep while the broker is down: degraded, not down."""
    from django.utils import timezone
    from django_celery_beat.models import PeriodicTask

    from config.celery import app

    settings.CELERY_TASK_ALWAYS_EAGER = False
    PeriodicTask.objects.update(last_run_at=timezone.now())  # beat is on time: only the broker is down
    original = app.conf.broker_url
    app.conf.broker_url = "redis://127.0.0.1:1/0"
    try:
        response = api.get("/healthz")
    finally:
        app.conf.broker_url = original
    assert response.status_code == 200
    body = response.json()
    assert body["checks"]["broker"] == "unavailable" and body["degraded"] == ["broker"]


def test_schema_and_docs_are_served(api):
    schema = api.get("/api/schema/?format=json")
    assert schema.status_code == 200
    spec = schema.json()
    assert "/api/v1/customers" in spec["paths"]
    post = spec["paths"]["/api/v1/customers"]["post"]
    assert {"201", "400", "401", "409"} <= set(post["responses"])
    assert api.get("/api/docs/").status_code == 200


def test_a_failing_check_shows_the_kind_of_error_not_its_detail(api, monkeypatch):
    from django.db import connection

    def broken_cursor(*args, **kwargs):
        raise RuntimeError('connection to server at "10.1.2.3", port 5432 failed: database "secretdb"')

    monkeypatch.setattr(connection, "cursor", broken_cursor)
    response = api.get("/healthz")
    assert response.status_code == 503
    assert response.json()["checks"]["database"] == "error: RuntimeError"
    assert "secretdb" not in response.content.decode() and "10.1.2.3" not in response.content.decode()


def test_health_is_in_the_schema(api):
    paths = api.get("/api/schema/?format=json").json()["paths"]
    for path in ("/healthz", "/health"):
        assert set(paths[path]["get"]["responses"]) == {"200", "503"}


def test_swagger_ui_is_served_from_our_static_files_not_a_cdn(api):
    page = api.get("/api/docs/").content.decode()
    assert "drf_spectacular_sidecar/swagger-ui-dist/swagger-ui-bundle.js" in page
    assert "cdn.jsdelivr.net" not in page
    from django.contrib.staticfiles import finders

    assert finders.find("drf_spectacular_sidecar/swagger-ui-dist/swagger-ui-bundle.js")
