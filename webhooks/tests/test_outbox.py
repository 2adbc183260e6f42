import json
import socket
import threading
import time
from datetime import timedelta
from unittest import mock

import pytest
import stripe
from django.db import connection, transaction
from django.utils import timezone

from config.errors import Conflict
from webhooks.models import Delivery, OutboundEvent, WebhookEndpoint
from webhooks.services import (
    deliveries_due_ids,
    delivery_attempt,
    delivery_claim,
    delivery_record,
    delivery_replay,
    endpoint_create,
    endpoint_delete,
    endpoint_disable,
    endpoint_enable,
    event_emit,
    events_emit,
)
from webhooks.tasks import webhooks_sweep_task

pytestmark = pytest.mark.django_db


@pytest.fixture
def endpoint(merchant, receiver, allow_loopback):
    return endpoint_create(merchant=merchant, url=receiver.url, events=["payment.succeeded"])


def test_events_emit_writes_each_event_and_a_delivery_for_the_subscribed_ones_only(merchant, endpoint):
    events = events_emit(
        merchant=merchant,
        events=[("payment.succeeded", {"n": 1}), ("charge.succeeded", {"n": 2}), ("payment.succeeded", {"n": 3})],
    )
    assert [(e.type, e.data["n"]) for e in events] == [
        ("payment.succeeded", 1),
        ("charge.succeeded", 2),
        ("payment.succeeded", 3),
    ]
    assert OutboundEvent.objects.count() == 3
    assert sorted(d.event.data["n"] for d in Delivery.objects.select_related("event")) == [1, 3]


def test_events_emit_rolls_back_with_its_caller(merchant, endpoint):
    with pytest.raises(RuntimeError), transaction.atomic():
        events_emit(merchant=merchant, events=[("payment.succeeded", {}), ("payment.succeeded", {})])
        raise RuntimeError("the change that caused them failed")
    assert not OutboundEvent.objects.exists() and not Delivery.objects.exists()


def test_emit_delivers_a_signed_event_that_verifies_with_the_endpoint_secret(
    merchant, endpoint, receiver, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        event = event_emit(merchant=merchant, type="payment.succeeded", data={"id": "p1", "amount": 1000})
    assert len(receiver.requests) == 1
    request = receiver.requests[0]
    body = json.loads(request["body"])
    assert body == {
        "id": str(event.id),
        "type": "payment.succeeded",
        "created": int(event.created_at.timestamp()),
        "data": {"id": "p1", "amount": 1000},
    }
    # A receiver verifies the Paydesk-Signature exactly like a Stripe one, with its secret.
    stripe.WebhookSignature.verify_header(
        request["body"].decode(), request["headers"]["Paydesk-Signature"], endpoint.secret, 300
    )
    with pytest.raises(stripe.SignatureVerificationError):
        stripe.WebhookSignature.verify_header(
            request["body"].decode(), request["headers"]["Paydesk-Signature"], "whsec_wrong", 300
        )
    delivery = Delivery.objects.get()
    assert (delivery.status, delivery.attempts, delivery.last_response_code) == ("delivered", 1, 200)


def test_only_subscribed_endpoints_get_deliveries_and_a_disabled_ones_is_held(merchant, receiver, allow_loopback):
    endpoint_create(merchant=merchant, url=receiver.url, events=["payment.succeeded"])
    all_events = endpoint_create(merchant=merchant, url=receiver.url, events=["*"])
    disabled = endpoint_create(merchant=merchant, url=receiver.url, events=["*"])
    WebhookEndpoint.objects.filter(pk=disabled.pk).update(enabled=False)
    event_emit(merchant=merchant, type="charge.failed", data={})
    assert dict(Delivery.objects.values_list("endpoint", "status")) == {all_events.pk: "pending", disabled.pk: "held"}


def test_rolled_back_transaction_sends_nothing(merchant, endpoint, receiver, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        with pytest.raises(RuntimeError):
            with transaction.atomic():
                event_emit(merchant=merchant, type="payment.succeeded", data={})
                raise RuntimeError("the payment update failed")
    assert not OutboundEvent.objects.exists() and not Delivery.objects.exists()
    assert receiver.requests == []


def test_committed_event_is_sent_even_if_the_broker_was_down(
    merchant, endpoint, receiver, django_capture_on_commit_callbacks
):
    with mock.patch("webhooks.tasks.delivery_attempt_task.apply_async", side_effect=ConnectionError("broker down")):
        with django_capture_on_commit_callbacks(execute=True):
            event_emit(merchant=merchant, type="payment.succeeded", data={})
    assert receiver.requests == []
    assert Delivery.objects.get().status == "pending"
    assert webhooks_sweep_task() == {"deliveries": 1, "inbound": 0}
    assert len(receiver.requests) == 1 and Delivery.objects.get().status == "delivered"


def test_500_then_200_delivers_the_same_event_id(merchant, endpoint, receiver):
    receiver.statuses = [500]
    event = event_emit(merchant=merchant, type="payment.succeeded", data={"n": 1})
    delivery = Delivery.objects.get()
    assert delivery_attempt(delivery_id=delivery.pk) == "retrying"
    delivery.refresh_from_db()
    assert delivery.last_response_code == 500
    wait = (delivery.next_attempt_at - timezone.now()).total_seconds()
    assert 50 <= wait <= 70  # first retry after about a minute (±10% jitter)
    assert delivery_attempt(delivery_id=delivery.pk) is None  # not due yet: nothing sent
    later = timezone.now() + timedelta(minutes=2)
    assert delivery_attempt(delivery_id=delivery.pk, now=later) == "delivered"
    ids = [b["id"] for b in receiver.bodies()]
    assert ids == [str(event.id), str(event.id)]
    assert list(delivery.attempt_log.values_list("response_code", flat=True)) == [500, 200]


def test_dead_receiver_ends_failed_after_the_schedule(merchant, settings, allow_loopback):
    settings.WEBHOOK_RETRY_SCHEDULE = [60, 300, 1800]
    endpoint_create(merchant=merchant, url="http://127.0.0.1:9/dead", events=["*"])  # port 9: refused
    event_emit(merchant=merchant, type="payment.failed", data={})
    delivery = Delivery.objects.get()
    now = timezone.now()
    statuses = []
    for _ in range(4):
        statuses.append(delivery_attempt(delivery_id=delivery.pk, now=now))
        delivery.refresh_from_db()
        now = delivery.next_attempt_at + timedelta(seconds=1)
    assert statuses == ["retrying", "retrying", "retrying", "failed"]
    assert delivery.attempts == 4 and delivery.last_response_code is None
    assert "ConnectionError" in delivery.last_error
    assert delivery_attempt(delivery_id=delivery.pk, now=now + timedelta(days=30)) is None  # dead letter stays dead


def test_endpoint_is_disabled_after_repeated_failures(merchant, settings, allow_loopback):
    settings.WEBHOOK_DISABLE_AFTER_FAILURES = 3
    endpoint = endpoint_create(merchant=merchant, url="http://127.0.0.1:9/dead", events=["*"])
    for _ in range(3):
        event_emit(merchant=merchant, type="payment.failed", data={})
    for delivery in Delivery.objects.all():
        delivery_attempt(delivery_id=delivery.pk)
    endpoint.refresh_from_db()
    assert endpoint.enabled is False and "3 failures" in endpoint.disabled_reason
    event_emit(merchant=merchant, type="payment.failed", data={})
    assert Delivery.objects.filter(status="held").count() == 1  # kept for when it is re-enabled, not sent
    assert deliveries_due_ids(now=timezone.now() + timedelta(days=30)) == []


def test_disabled_endpoint_gets_no_further_attempts(merchant, endpoint, receiver):
    with mock.patch("webhooks.tasks.delivery_attempt_task.apply_async"):
        event_emit(merchant=merchant, type="payment.succeeded", data={})
    delivery = Delivery.objects.get()
    endpoint_disable(endpoint=endpoint, reason="disabled by staff")
    later = timezone.now() + timedelta(days=1)
    assert deliveries_due_ids(now=later) == []
    assert delivery_attempt(delivery_id=delivery.pk, now=later) is None
    assert webhooks_sweep_task()["deliveries"] == 0
    delivery.refresh_from_db()
    assert (delivery.status, delivery.attempts) == ("pending", 0)  # kept, not due, not failed
    assert receiver.requests == []
    endpoint_enable(endpoint=endpoint)  # staff re-enable: the kept delivery goes out
    assert webhooks_sweep_task()["deliveries"] == 1
    assert len(receiver.requests) == 1 and Delivery.objects.get().status == "delivered"


def test_a_deleted_endpoint_gets_no_further_attempts_and_cannot_be_re_enabled(merchant, endpoint, receiver):
    with mock.patch("webhooks.tasks.delivery_attempt_task.apply_async"):
        event_emit(merchant=merchant, type="payment.succeeded", data={})
    delivery = Delivery.objects.get()
    endpoint_delete(endpoint=endpoint)
    later = timezone.now() + timedelta(days=1)
    assert deliveries_due_ids(now=later) == []
    assert delivery_attempt(delivery_id=delivery.pk, now=later) is None
    delivery.refresh_from_db()
    assert (delivery.status, delivery.attempts) == ("failed", 0)
    with pytest.raises(Conflict):
        endpoint_enable(endpoint=endpoint)
    with pytest.raises(Conflict):
        delivery_replay(delivery=delivery)
    endpoint_disable(endpoint=endpoint, reason="disabled by staff")  # leaves it deleted
    endpoint.refresh_from_db()
    assert endpoint.disabled_reason == "deleted by the merchant" and endpoint.deleted_at is not None
    assert webhooks_sweep_task()["deliveries"] == 0 and receiver.requests == []


def test_a_delivery_in_flight_when_its_endpoint_is_deleted_fails_instead_of_retrying(merchant, endpoint, receiver):
    with mock.patch("webhooks.tasks.delivery_attempt_task.apply_async"):
        event_emit(merchant=merchant, type="payment.succeeded", data={})
    claimed = delivery_claim(delivery_id=Delivery.objects.get().pk)
    endpoint_delete(endpoint=endpoint)  # meanwhile: the claimed delivery is left to its worker
    assert Delivery.objects.get().status == "pending"
    recorded = delivery_record(delivery=claimed, code=500, body="", error="", latency_ms=1)
    assert recorded.status == "failed" and "deleted" in recorded.last_error
    assert Delivery.objects.get().attempt_log.count() == 1


def test_auto_disabled_endpoint_stops_retrying(merchant, settings, allow_loopback):
    settings.WEBHOOK_DISABLE_AFTER_FAILURES = 2
    endpoint = endpoint_create(merchant=merchant, url="http://127.0.0.1:9/dead", events=["*"])
    for _ in range(3):
        event_emit(merchant=merchant, type="payment.failed", data={})
    first, second, third = Delivery.objects.order_by("created_at", "pk")
    assert delivery_attempt(delivery_id=first.pk) == "retrying"
    assert delivery_attempt(delivery_id=second.pk) == "retrying"
    endpoint.refresh_from_db()
    assert endpoint.enabled is False
    assert delivery_attempt(delivery_id=third.pk) is None  # disabled by then: never tried
    attempts = dict(Delivery.objects.values_list("pk", "attempts"))
    assert sorted(attempts.values()) == [0, 1, 1]
    far = timezone.now() + timedelta(days=10)
    assert deliveries_due_ids(now=far) == []
    for delivery_id in attempts:
        assert delivery_attempt(delivery_id=delivery_id, now=far) is None
    assert dict(Delivery.objects.values_list("pk", "attempts")) == attempts
    assert set(Delivery.objects.values_list("status", flat=True)) <= {"pending", "retrying"}


def test_stale_claim_of_a_dead_worker_is_reclaimed(merchant, endpoint, receiver):
    event_emit(merchant=merchant, type="payment.succeeded", data={})
    delivery = Delivery.objects.get()
    Delivery.objects.filter(pk=delivery.pk).update(claimed_at=timezone.now())
    assert deliveries_due_ids() == []  # claimed by a live worker: leave it
    assert delivery_attempt(delivery_id=delivery.pk) is None
    Delivery.objects.filter(pk=delivery.pk).update(claimed_at=timezone.now() - timedelta(minutes=10))
    assert deliveries_due_ids() == [str(delivery.pk)]
    assert delivery_attempt(delivery_id=delivery.pk) == "delivered"


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_two_workers_never_send_the_same_attempt(merchant, receiver, allow_loopback):
    endpoint_create(merchant=merchant, url=receiver.url, events=["*"])
    with mock.patch("webhooks.tasks.delivery_attempt_task.apply_async"):  # leave them to the racing workers
        for i in range(40):
            event_emit(merchant=merchant, type="payment.succeeded", data={"i": i})
    ids = list(Delivery.objects.values_list("pk", flat=True))
    assert set(Delivery.objects.values_list("status", flat=True)) == {"pending"}
    barrier = threading.Barrier(4)

    def worker():
        barrier.wait()
        try:
            for delivery_id in ids:  # every worker tries every delivery
                delivery_attempt(delivery_id=delivery_id)
        finally:
            connection.close()

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    sent = [b["id"] for b in receiver.bodies()]
    assert len(sent) == 40 and len(set(sent)) == 40
    assert set(Delivery.objects.values_list("status", flat=True)) == {"delivered"}
    assert set(Delivery.objects.values_list("attempts", flat=True)) == {1}


def test_outcome_arriving_after_the_claim_was_lost_is_dropped(merchant, endpoint, receiver):
    event_emit(merchant=merchant, type="payment.succeeded", data={})
    delivery_id = Delivery.objects.get().pk
    t0 = timezone.now()
    slow = delivery_claim(delivery_id=delivery_id, now=t0)  # worker A, then stuck past the lease
    later = t0 + timedelta(minutes=10)
    fast = delivery_claim(delivery_id=delivery_id, now=later)  # worker B reclaims
    assert fast is not None and fast.attempts == 2
    # A's late answer arrives before B's: it must not record anything.
    assert delivery_record(delivery=slow, code=200, body="", error="", latency_ms=1) is None
    delivery = Delivery.objects.get()
    assert (delivery.status, delivery.claimed_at) == ("pending", later)
    assert delivery_record(delivery=fast, code=500, body="", error="", latency_ms=1).status == "retrying"
    # ...or after it: still dropped, B's outcome stands.
    assert delivery_record(delivery=slow, code=200, body="", error="", latency_ms=1) is None
    delivery.refresh_from_db()
    assert (delivery.status, delivery.last_response_code, delivery.attempts) == ("retrying", 500, 2)
    assert list(delivery.attempt_log.values_list("number", "response_code")) == [(2, 500)]


class DrippingReceiver:
    """Accepts, reads the request, then answers one byte every `interval` seconds: each
    read finishes well within a per-read timeout, the whole answer takes `total` s."""

    def __init__(self, interval=0.2, total=6.0):
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}/hook"
        self.interval, self.total = interval, total
        self.thread = threading.Thread(target=self.serve, daemon=True)
        self.thread.start()

    def serve(self):
        conn, _ = self.sock.accept()
        with conn:
            conn.recv(65536)
            answer = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n" + b"X-Pad: " + b"x" * 200 + b"\r\n\r\nok"
            deadline = time.monotonic() + self.total
            try:
                for byte in answer:
                    if time.monotonic() > deadline:
                        break
                    conn.sendall(bytes([byte]))
                    time.sleep(self.interval)
            except OSError:
                pass

    def close(self):
        self.sock.close()


def test_a_dripping_receiver_cannot_hold_a_worker_past_the_deadline(merchant, settings, allow_loopback):
    settings.WEBHOOK_DELIVERY_TIMEOUT = 1.0
    slow = DrippingReceiver(interval=0.2, total=6.0)
    try:
        endpoint_create(merchant=merchant, url=slow.url, events=["*"])
        event_emit(merchant=merchant, type="payment.failed", data={})
        started = time.monotonic()
        status = delivery_attempt(delivery_id=Delivery.objects.get().pk)
        elapsed = time.monotonic() - started
    finally:
        slow.close()
    assert elapsed < 2.5, elapsed
    delivery = Delivery.objects.get()
    assert status == "retrying" and delivery.last_response_code is None
    assert "DeadlineExceeded" in delivery.last_error


def test_replay_refuses_to_clear_a_claim_in_flight(merchant, endpoint, receiver):
    event_emit(merchant=merchant, type="payment.succeeded", data={})
    delivery = Delivery.objects.get()
    claimed = delivery_claim(delivery_id=delivery.pk)
    with pytest.raises(Conflict):
        delivery_replay(delivery=delivery)
    delivery.refresh_from_db()
    assert delivery.claimed_at == claimed.claimed_at
    # The worker's outcome is still recorded...
    assert delivery_record(delivery=claimed, code=200, body="", error="", latency_ms=1).status == "delivered"
    # ...and once nothing is in flight, replay works (a stale claim counts as nothing).
    assert delivery_replay(delivery=delivery).status == "pending"
    Delivery.objects.filter(pk=delivery.pk).update(claimed_at=timezone.now() - timedelta(hours=1))
    assert delivery_replay(delivery=delivery).claimed_at is None
