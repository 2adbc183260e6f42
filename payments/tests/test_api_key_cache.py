"""API keys from this process's memory (payments.identity.key_cache): no query for a key
that authenticated lately, and revocation still honoured: at once in the process that
revokes, within API_KEY_CACHE_SECONDS everywhere else (a change this process did not
make through the ORM instance: here, a queryset update, as another process's would be)."""

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone
from rest_framework.test import APIClient, APIRequestFactory

from payments.identity.authentication import ApiKeyAuthentication
from payments.identity.key_cache import api_key_cache
from payments.identity.models import ApiKey, Merchant
from payments.identity.services import api_key_create, api_key_revoke

pytestmark = pytest.mark.django_db

TTL = 5.0


class FakeClock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self):
        return self.now


@pytest.fixture
def clock(monkeypatch, settings):
    settings.API_KEY_CACHE_SECONDS = TTL
    fake = FakeClock()
    monkeypatch.setattr(api_key_cache, "clock", fake)
    return fake


@pytest.fixture
def key(merchant):
    api_key, raw = api_key_create(merchant=merchant)
    return api_key, raw


def client(raw):
    api = APIClient()
    api.credentials(HTTP_AUTHORIZATION=f"Bearer {raw}")
    return api


def authenticate(raw):
    request = APIRequestFactory().get("/api/v1/customers", HTTP_AUTHORIZATION=f"Bearer {raw}")
    return ApiKeyAuthentication().authenticate(request)


def status(raw) -> int:
    return client(raw).get("/api/v1/customers").status_code


def test_a_key_that_authenticated_lately_costs_no_query(clock, key, merchant):
    api_key, raw = key
    authenticate(raw)  # looked up, remembered, last use recorded
    with CaptureQueriesContext(connection) as ctx:
        caller, auth = authenticate(raw)
    assert ctx.captured_queries == []
    # What views and permissions read from the caller is all there, loaded.
    assert caller.merchant.pk == merchant.pk and caller.merchant.name == merchant.name
    assert caller.merchant.is_active and caller.require_merchant().pk == merchant.pk
    assert auth.pk == api_key.pk and caller.api_key.pk == api_key.pk and auth.merchant_id == merchant.pk
    assert caller.throttle_ident == f"merchant:{merchant.pk}"
    assert str(caller) == f"{merchant.name} ({api_key.prefix}…)"


def test_a_whole_read_request_on_a_warm_process_costs_only_its_own_query(clock, key, customer):
    from wallets.tests.factories import WalletFactory

    WalletFactory(customer=customer, balance=0)
    _, raw = key
    api = client(raw)
    assert api.get(f"/api/v1/wallets/{customer.pk}?currency=usd").status_code == 200
    with CaptureQueriesContext(connection) as ctx:
        assert api.get(f"/api/v1/wallets/{customer.pk}?currency=usd").status_code == 200
    tables = [q["sql"].split(" FROM ")[1].split()[0] for q in ctx.captured_queries]
    assert tables == ['"wallets_account"'], ctx.captured_queries  # the wallet; no key, no throttle query


def test_each_request_gets_its_own_instances(clock, key, merchant):
    _, raw = key
    authenticate(raw)
    first, _ = authenticate(raw)
    first.merchant.name = "changed by one request"
    first.api_key.name = "changed too"
    second, _ = authenticate(raw)
    assert second.merchant is not first.merchant and second.api_key is not first.api_key
    assert second.merchant.name == merchant.name and second.api_key.name == ""


def test_a_key_revoked_in_this_process_is_refused_at_once(clock, key):
    api_key, raw = key
    assert status(raw) == 200
    api_key_revoke(api_key=api_key)
    assert status(raw) == 401


def test_a_key_revoked_elsewhere_is_refused_once_the_ttl_has_passed(clock, key):
    api_key, raw = key
    assert status(raw) == 200
    ApiKey.objects.filter(pk=api_key.pk).update(revoked_at=timezone.now())  # as another process would
    clock.now += TTL - 0.1
    assert status(raw) == 200  # still remembered: the staleness the TTL bounds
    clock.now += 0.2
    assert status(raw) == 401
    assert status(raw) == 401  # and a refused key is not remembered


def test_a_merchant_suspended_in_this_process_is_refused_at_once(clock, key, merchant):
    _, raw = key
    assert status(raw) == 200
    merchant.status = Merchant.Status.SUSPENDED
    merchant.save()  # as the admin's change form does
    response = client(raw).get("/api/v1/customers")
    assert response.status_code == 401 and "suspended" in response.json()["error"]["message"]


def test_a_merchant_suspended_elsewhere_is_refused_once_the_ttl_has_passed(clock, key, merchant):
    _, raw = key
    assert status(raw) == 200
    Merchant.objects.filter(pk=merchant.pk).update(status=Merchant.Status.SUSPENDED)
    clock.now += TTL - 0.1
    assert status(raw) == 200
    clock.now += 0.2
    assert status(raw) == 401


def test_a_deleted_key_is_refused_at_once(clock, key):
    api_key, raw = key
    assert status(raw) == 200
    ApiKey.objects.get(pk=api_key.pk).delete()  # as the admin's delete does
    assert status(raw) == 401


def test_no_cache_when_the_ttl_is_zero(clock, key, settings):
    settings.API_KEY_CACHE_SECONDS = 0
    api_key, raw = key
    assert status(raw) == 200
    ApiKey.objects.filter(pk=api_key.pk).update(revoked_at=timezone.now())
    assert status(raw) == 401


def test_last_use_is_still_recorded_once_a_minute_from_the_cache(clock, key, monkeypatch):
    api_key, raw = key
    start = timezone.now()
    monkeypatch.setattr(timezone, "now", lambda: start)
    authenticate(raw)
    with CaptureQueriesContext(connection) as ctx:
        authenticate(raw)
    assert ctx.captured_queries == []
    monkeypatch.setattr(timezone, "now", lambda: start + timezone.timedelta(seconds=61))
    with CaptureQueriesContext(connection) as ctx:
        authenticate(raw)  # still remembered (the fake clock stands still), but a minute on
        authenticate(raw)
    assert len(ctx.captured_queries) == 1 and ctx.captured_queries[0]["sql"].startswith("UPDATE")
    api_key.refresh_from_db()
    assert api_key.last_used_at == start + timezone.timedelta(seconds=61)
