import threading
import time
from datetime import timedelta

import pytest
from django.db import connection
from django.utils import timezone
from rest_framework.test import APIClient

from config.api.idempotency import idempotency_keys_purge
from config.models import IdempotencyKey
from payments.identity.models import Customer
from payments.identity.services import api_key_create

pytestmark = pytest.mark.django_db


def create(client, key, body):
    return client.post("/api/v1/customers", body, format="json", HTTP_IDEMPOTENCY_KEY=key)


def test_replay_returns_first_response_and_does_nothing(merchant_api, merchant):
    first = create(merchant_api, "k1", {"external_id": "a"})
    assert first.status_code == 201
    assert "Idempotent-Replayed" not in first
    again = create(merchant_api, "k1", {"external_id": "a"})
    assert again.status_code == 201
    assert again["Idempotent-Replayed"] == "true"
    assert again.json() == first.json()
    assert again.content == first.content  # the very same bytes: key order included
    assert list(first.json()) != sorted(first.json())  # (which a jsonb round trip would sort)
    assert Customer.objects.filter(merchant=merchant).count() == 1


def test_same_key_other_body_is_idempotency_error(merchant_api, merchant):
    create(merchant_api, "k1", {"external_id": "a"})
    response = create(merchant_api, "k1", {"external_id": "b"})
    assert response.status_code == 400
    assert response.json()["error"]["type"] == "idempotency_error"
    assert Customer.objects.filter(merchant=merchant).count() == 1


def test_errors_after_validation_are_replayed(merchant_api, merchant):
    create(merchant_api, "first", {"external_id": "a"})
    conflict = create(merchant_api, "k2", {"external_id": "a"})
    assert conflict.status_code == 409
    Customer.objects.filter(merchant=merchant).delete()  # the conflict would now succeed...
    replay = create(merchant_api, "k2", {"external_id": "a"})
    assert replay.status_code == 409  # ...but the key replays its first result, as Stripe does
    assert replay.content == conflict.content
    assert replay["Idempotent-Replayed"] == "true"
    assert not Customer.objects.filter(merchant=merchant).exists()


def test_validation_failure_saves_nothing_and_can_be_retried_fixed(merchant_api, merchant):
    bad = create(merchant_api, "k3", {"email": "x@example.com"})
    assert bad.status_code == 400
    assert not IdempotencyKey.objects.exists()
    fixed = create(merchant_api, "k3", {"external_id": "a", "email": "x@example.com"})
    assert fixed.status_code == 201


def test_key_in_flight_is_409(merchant_api, merchant):
    IdempotencyKey.objects.create(
        scope=f"merchant:{merchant.pk}",
        key="busy",
        method="POST",
        path="/api/v1/customers",
        request_hash="x" * 64,
    )
    response = create(merchant_api, "busy", {"external_id": "a"})
    # A different hash is reported as misuse first; same request while running -> 409.
    assert response.status_code == 400
    IdempotencyKey.objects.all().delete()
    create(merchant_api, "busy", {"external_id": "a"})
    IdempotencyKey.objects.filter(key="busy").update(state=IdempotencyKey.State.IN_FLIGHT)
    response = create(merchant_api, "busy", {"external_id": "a"})
    assert response.status_code == 409
    assert response.json()["error"]["type"] == "conflict"


def test_keys_are_scoped_to_the_caller(merchant_api, client_for):
    from payments.tests.factories import MerchantFactory

    other = client_for(MerchantFactory())
    assert create(merchant_api, "shared", {"external_id": "a"}).status_code == 201
    response = create(other, "shared", {"external_id": "a"})
    assert response.status_code == 201
    assert "Idempotent-Replayed" not in response


def test_overlong_key_is_400(merchant_api):
    response = create(merchant_api, "k" * 256, {"external_id": "a"})
    assert response.status_code == 400
    assert response.json()["error"]["param"] == "Idempotency-Key"


def test_keys_expire_after_24_hours(merchant_api, merchant):
    create(merchant_api, "old", {"external_id": "a"})
    IdempotencyKey.objects.update(created_at=timezone.now() - timedelta(hours=25))
    # An expired key is a fresh key: this runs again (and conflicts on external_id).
    assert create(merchant_api, "old", {"external_id": "a"}).status_code == 409
    IdempotencyKey.objects.update(created_at=timezone.now() - timedelta(hours=25))
    assert idempotency_keys_purge() == 1
    assert not IdempotencyKey.objects.exists()


def test_malformed_json_with_a_key_is_a_parse_error_and_claims_nothing(merchant_api):
    response = merchant_api.generic(
        "POST", "/api/v1/customers", '{"external_id": "a",', content_type="application/json", HTTP_IDEMPOTENCY_KEY="bad"
    )
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["type"] == "invalid_request_error" and error["param"] is None
    assert "Malformed" in error["message"]
    assert not IdempotencyKey.objects.exists()


def test_in_flight_key_abandoned_past_the_lease_runs_again(merchant_api, merchant, settings):
    settings.IDEMPOTENCY_IN_FLIGHT_LEASE = timedelta(seconds=120)
    first = create(merchant_api, "crashed", {"external_id": "a"})
    assert first.status_code == 201
    # As if the process had died after the customer was written but before the key was
    # saved (here undone, to see that the retry really runs).
    Customer.objects.filter(merchant=merchant).delete()
    IdempotencyKey.objects.filter(key="crashed").update(
        state=IdempotencyKey.State.IN_FLIGHT, response_status=None, response_body=None
    )
    IdempotencyKey.objects.filter(key="crashed").update(created_at=timezone.now() - timedelta(seconds=100))
    assert create(merchant_api, "crashed", {"external_id": "a"}).status_code == 409  # within the lease
    IdempotencyKey.objects.filter(key="crashed").update(created_at=timezone.now() - timedelta(seconds=121))
    retry = create(merchant_api, "crashed", {"external_id": "a"})
    assert retry.status_code == 201 and "Idempotent-Replayed" not in retry
    assert Customer.objects.filter(merchant=merchant).count() == 1
    row = IdempotencyKey.objects.get(key="crashed")
    assert row.state == IdempotencyKey.State.DONE and row.response_status == 201
    replay = create(merchant_api, "crashed", {"external_id": "a"})
    assert replay["Idempotent-Replayed"] == "true" and replay.json() == retry.json()
    # An abandoned key with another body is still misuse, not a takeover.
    IdempotencyKey.objects.filter(key="crashed").update(
        state=IdempotencyKey.State.IN_FLIGHT, created_at=timezone.now() - timedelta(seconds=121)
    )
    assert create(merchant_api, "crashed", {"external_id": "b"}).json()["error"]["type"] == "idempotency_error"


@pytest.mark.postgres
@pytest.mark.urls("config.tests.urls")
@pytest.mark.django_db(transaction=True)
def test_concurrent_requests_with_one_key_run_the_handler_once(merchant):
    """Proves the idempotency layer itself: the handler has no uniqueness of its own, so
    anything but exactly one execution is the layer's fault."""
    from config.tests.urls import CountedCreateApi

    CountedCreateApi.executions = 0
    CountedCreateApi.entered.clear()
    CountedCreateApi.gate.clear()
    _, raw = api_key_create(merchant=merchant)
    statuses, barrier = [], threading.Barrier(8)

    def post():
        client = APIClient()
        client.credentials(HTTP_AUTHORIZATION=f"Bearer {raw}")
        return client.post("/api/v1/_test/counted", {"n": 1}, format="json", HTTP_IDEMPOTENCY_KEY="race")

    def worker():
        barrier.wait()
        try:
            response = post()
            statuses.append((response.status_code, response.get("Idempotent-Replayed"), response.json()))
        finally:
            connection.close()

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for thread in threads:
        thread.start()
    try:
        # One request is inside the handler, held there; the other seven must all be
        # answered meanwhile, without entering it.
        assert CountedCreateApi.entered.wait(timeout=30)
        deadline = time.monotonic() + 30
        while len(statuses) < 7 and time.monotonic() < deadline:
            time.sleep(0.02)
    finally:
        CountedCreateApi.gate.set()
    for thread in threads:
        thread.join()
    assert CountedCreateApi.executions == 1, statuses
    assert len(statuses) == 8
    fresh = [s for s in statuses if s[:2] == (201, None)]
    assert len(fresh) == 1, statuses
    assert fresh[0][2] == {"execution": 1, "echo": 1}
    held_out = [(status, replayed, body["error"]["type"]) for status, replayed, body in statuses[:7]]
    assert held_out == [(409, None, "conflict")] * 7, statuses
    assert statuses[7] == fresh[0]
    replay = post()
    assert (replay.status_code, replay.get("Idempotent-Replayed"), replay.json()) == (201, "true", fresh[0][2])
    assert CountedCreateApi.executions == 1
