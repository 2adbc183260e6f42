import hashlib
import hmac
import json
import threading
import time
import uuid
from datetime import timedelta
from unittest import mock

import pytest
from celery.exceptions import Retry
from django.db import connection
from django.utils import timezone
from rest_framework.test import APIClient

from config.tests.operator_actions_support import operator_url
from payments.identity.models import Merchant
from payments.identity.services import merchant_create
from webhooks import services
from webhooks.models import InboundEvent
from webhooks.registry import Ignored, register_handler
from webhooks.services import HandlerFailed, inbound_event_process
from webhooks.tasks import inbound_event_process_task, webhooks_sweep_task

from .support import signed_post, stripe_event

pytestmark = pytest.mark.django_db

STRIPE_URL = "/api/v1/webhooks/stripe"
calls: dict[str, list] = {"ok": [], "flaky": [], "broken": [], "writes": []}
state = {"flaky_failures_left": 0, "broken": True}


@register_handler("stripe", "paydesk_test.ok")
def _ok(event):
    calls["ok"].append(event.event_id)


@register_handler("stripe", "paydesk_test.ignore_me")
def _ignore(event):
    return Ignored("nothing maps to this")


@register_handler("stripe", "paydesk_test.flaky")
def _flaky(event):
    calls["flaky"].append(event.event_id)
    if state["flaky_failures_left"] > 0:
        state["flaky_failures_left"] -= 1
        raise RuntimeError("transient trouble")


@register_handler("stripe", "paydesk_test.broken")
def _broken(event):
    calls["broken"].append(event.event_id)
    if state["broken"]:
        raise ValueError("bug in handler")


@register_handler("stripe", "paydesk_test.writes_then_fails")
def _writes_then_fails(event):
    calls["writes"].append(merchant_create(name=f"written by {event.event_id}").pk)
    if state["broken"]:
        raise ValueError("failed after writing")


@pytest.fixture(autouse=True)
def _reset_calls():
    for v in calls.values():
        v.clear()


def event(event_id="evt_1", type_="paydesk_test.ok"):
    body = stripe_event("payment_intent.succeeded", event_id=event_id)
    body["type"] = type_
    return body


def post(api, body, secret, **kw):
    return signed_post(api, STRIPE_URL, body, secret=secret, **kw)


class TestSignatures:
    def test_valid_signature_is_stored_verified_and_processed(
        self, api, stripe_secret, django_capture_on_commit_callbacks
    ):
        with django_capture_on_commit_callbacks(execute=True):
            response = post(api, event(), stripe_secret)
        assert response.status_code == 200
        assert response.json()["duplicate"] is False
        stored = InboundEvent.objects.get(provider="stripe", event_id="evt_1")
        assert stored.signature_verified and stored.status == "processed"
        assert stored.headers["Stripe-Signature"].startswith("t=")
        assert json.loads(stored.raw_body)["id"] == "evt_1"
        assert calls["ok"] == ["evt_1"]

    @pytest.mark.parametrize("problem", ["wrong-secret", "missing", "stale", "tampered", "garbage-header"])
    def test_bad_signature_is_400_and_nothing_is_stored(self, api, stripe_secret, problem):
        body = json.dumps(event())
        if problem == "wrong-secret":
            response = post(api, body, "whsec_other")
        elif problem == "missing":
            response = api.generic("POST", STRIPE_URL, body, content_type="application/json")
        elif problem == "stale":
            response = post(api, body, stripe_secret, timestamp=int(time.time()) - 301)
        elif problem == "tampered":
            from webhooks.signing import sign

            header = sign(body, stripe_secret)
            response = api.generic(
                "POST",
                STRIPE_URL,
                body.replace("evt_1", "evt_2"),
                content_type="application/json",
                HTTP_STRIPE_SIGNATURE=header,
            )
        else:
            response = api.generic(
                "POST", STRIPE_URL, body, content_type="application/json", HTTP_STRIPE_SIGNATURE="nonsense"
            )
        assert response.status_code == 400
        assert response.json()["error"]["type"] == "invalid_request_error"
        assert not InboundEvent.objects.exists()
        assert calls["ok"] == []

    def test_missing_stripe_signature_names_the_header(self, api, stripe_secret):
        response = api.post(STRIPE_URL, event(), format="json")
        assert response.status_code == 400
        message = response.json()["error"]["message"]
        assert "Stripe-Signature header is missing" in message and "without_verification" not in message

    def test_timestamp_within_tolerance_is_accepted(self, api, stripe_secret):
        assert post(api, event(), stripe_secret, timestamp=int(time.time()) - 290).status_code == 200

    def test_secret_rotation_accepts_old_and_new(self, api, settings):
        settings.STRIPE_WEBHOOK_SECRET = "whsec_new,whsec_old"
        assert post(api, event("evt_a"), "whsec_old").status_code == 200
        assert post(api, event("evt_b"), "whsec_new").status_code == 200
        assert post(api, event("evt_c"), "whsec_gone").status_code == 400

    def test_several_v1_signatures_one_valid(self, api, stripe_secret):
        from webhooks.signing import sign

        body = json.dumps(event())
        good = sign(body, stripe_secret)
        t, v1 = good.split(",")
        header = f"{t},v1={'0' * 64},{v1},v0=ignored"
        response = api.generic("POST", STRIPE_URL, body, content_type="application/json", HTTP_STRIPE_SIGNATURE=header)
        assert response.status_code == 200

    def test_no_secret_in_debug_accepts_unverified(self, api, settings):
        settings.STRIPE_WEBHOOK_SECRET = ""
        settings.DEBUG = True
        response = api.post(STRIPE_URL, event(), format="json")
        assert response.status_code == 200
        assert InboundEvent.objects.get().signature_verified is False

    def test_no_secret_without_debug_refuses_and_health_says_why(self, api, settings):
        settings.STRIPE_WEBHOOK_SECRET = ""
        settings.DEBUG = False
        response = api.post(STRIPE_URL, event(), format="json")
        assert response.status_code == 503
        assert "STRIPE_WEBHOOK_SECRET" in response.json()["error"]["message"]
        assert not InboundEvent.objects.exists()
        assert "STRIPE_WEBHOOK_SECRET" in api.get("/healthz").json()["checks"]["stripe_webhook"]

    def test_root_alias_url_works(self, api, stripe_secret):
        assert signed_post(api, "/webhooks/stripe", event(), secret=stripe_secret).status_code == 200


class TestShape:
    def test_oversized_body_is_400(self, api, stripe_secret):
        body = event()
        body["padding"] = "x" * (1024 * 1024)
        assert post(api, body, stripe_secret).status_code == 400
        assert not InboundEvent.objects.exists()

    @pytest.mark.parametrize(
        "raw",
        [
            '{"id": "evt_1", "type":',
            "[1,2]",
            '{"type": "x", "data": {"object": {}}}',
            '{"id": "evt_1", "type": "x", "data": "nope"}',
            '{"id": 5, "type": "x", "data": {"object": {}}}',
        ],
        ids=["malformed", "array", "no-id", "no-object", "numeric-id"],
    )
    def test_wrong_shape_is_400(self, api, stripe_secret, raw):
        assert post(api, raw, stripe_secret).status_code == 400
        assert not InboundEvent.objects.exists()


class TestHostileInput:
    """Whatever arrives at the two webhook URLs, the answer is a 400 in the error shape,
    never a 500 (a DataError from PostgreSQL, a UnicodeDecodeError, RequestDataTooBig)."""

    URLS = [STRIPE_URL, "/api/v1/payments/webhook"]

    def signed_bytes(self, api, url, raw: bytes, secret: str, **extra):
        timestamp = int(time.time())
        digest = hmac.new(secret.encode(), f"{timestamp}.".encode() + raw, hashlib.sha256).hexdigest()
        header = "HTTP_STRIPE_SIGNATURE" if url == STRIPE_URL else "HTTP_X_PAYDESK_SIGNATURE"
        return api.generic(
            "POST", url, raw, content_type="application/json", **{header: f"t={timestamp},v1={digest}"}, **extra
        )

    def assert_400(self, response):
        assert response.status_code == 400, response.content
        assert response.json()["error"]["type"] == "invalid_request_error"
        assert not InboundEvent.objects.exists()

    @pytest.mark.parametrize("url", URLS)
    def test_non_utf8_body_is_400(self, api, stripe_secret, settings, url):
        secret = stripe_secret if url == STRIPE_URL else settings.MOCK_WEBHOOK_SECRET
        raw = json.dumps(event() if url == STRIPE_URL else {"provider": "mock"}).encode()[:-1] + b', "x": "\xff"}'
        self.assert_400(self.signed_bytes(api, url, raw, secret))

    @pytest.mark.parametrize("url", URLS)
    def test_body_over_djangos_upload_limit_is_400(self, api, stripe_secret, url):
        raw = b'{"padding": "' + b"x" * (3 * 1024 * 1024) + b'"}'  # > DATA_UPLOAD_MAX_MEMORY_SIZE (2.5 MB)
        self.assert_400(self.signed_bytes(api, url, raw, stripe_secret))

    @pytest.mark.parametrize("url", URLS)
    def test_body_over_a_lower_upload_limit_is_400(self, api, stripe_secret, settings, url):
        settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 1000  # below WEBHOOK_MAX_BODY_BYTES: Django refuses first
        raw = json.dumps(event() | {"padding": "x" * 2000}).encode()
        self.assert_400(self.signed_bytes(api, url, raw, stripe_secret))

    @pytest.mark.parametrize(
        "change,param",
        [
            (lambda e: e.update(id="evt_" + "x" * 252), "id"),
            (lambda e: e.update(type="paydesk_test." + "x" * 88), "type"),
            (lambda e: e.update(id="evt_\x00"), "id"),
            (lambda e: e["data"]["object"]["metadata"].update(note="a\x00b"), "data.object.metadata.note"),
            (lambda e: e["data"]["object"]["metadata"].update({"k\x00": "v"}), "data.object.metadata.k\\u0000"),
            (lambda e: e["data"]["object"].update(lines=["ok", "n\x00"]), "data.object.lines[1]"),
        ],
        ids=["id-256", "type-101", "nul-in-id", "nul-in-value", "nul-in-key", "nul-in-list"],
    )
    def test_signed_event_that_cannot_be_stored_is_400(self, api, stripe_secret, change, param):
        body = event()
        body["data"]["object"].setdefault("metadata", {})
        change(body)
        response = post(api, body, stripe_secret)
        self.assert_400(response)
        assert response.json()["error"]["param"] == param

    def test_longest_storable_id_and_type_are_accepted(self, api, stripe_secret):
        body = event("evt_" + "x" * 251, type_="paydesk_test." + "x" * 87)
        assert post(api, body, stripe_secret).status_code == 200

    def test_nul_in_a_provider_notification_is_400(self, api, settings):
        body = {
            "provider": "mock",
            "provider_payment_id": "mock_pay_1",
            "status": "paid",
            "amount": 1000,
            "currency": "usd",
            "extra": {"note": "a\x00b"},
        }
        response = signed_post(
            api, "/api/v1/payments/webhook", body, secret=settings.MOCK_WEBHOOK_SECRET, header="X-Paydesk-Signature"
        )
        self.assert_400(response)


class TestProcessing:
    def test_duplicate_delivery_is_200_and_processed_once(self, api, stripe_secret, django_capture_on_commit_callbacks):
        with django_capture_on_commit_callbacks(execute=True):
            first = post(api, event(), stripe_secret)
            second = post(api, event(), stripe_secret)
        assert first.status_code == second.status_code == 200
        assert second.json()["duplicate"] is True
        assert InboundEvent.objects.count() == 1
        assert calls["ok"] == ["evt_1"]

    def test_unknown_type_is_stored_and_ignored(self, api, stripe_secret, django_capture_on_commit_callbacks):
        with django_capture_on_commit_callbacks(execute=True):
            assert post(api, event(type_="customer.tax_id.created"), stripe_secret).status_code == 200
        stored = InboundEvent.objects.get()
        assert stored.status == "ignored" and "No handler" in stored.last_error

    def test_handler_may_ignore_with_a_reason(self, api, stripe_secret, django_capture_on_commit_callbacks):
        with django_capture_on_commit_callbacks(execute=True):
            post(api, event(type_="paydesk_test.ignore_me"), stripe_secret)
        stored = InboundEvent.objects.get()
        assert (stored.status, stored.last_error) == ("ignored", "nothing maps to this")

    def test_failing_handler_is_not_retried_inline_but_by_the_sweep_when_due(
        self, api, stripe_secret, django_capture_on_commit_callbacks
    ):
        state["flaky_failures_left"] = 2
        with django_capture_on_commit_callbacks(execute=True):
            assert post(api, event(type_="paydesk_test.flaky"), stripe_secret).status_code == 200
        stored = InboundEvent.objects.get()
        # Eager (no broker): one try inside the request, no inline retries.
        assert (stored.status, stored.attempts, len(calls["flaky"])) == ("failed", 1, 1)
        assert 25 <= (stored.next_attempt_at - timezone.now()).total_seconds() <= 35  # 30 s ±10%
        assert webhooks_sweep_task()["inbound"] == 0  # not due yet
        for expected_attempts in (2, 3):
            InboundEvent.objects.update(next_attempt_at=timezone.now() - timedelta(seconds=1))
            assert webhooks_sweep_task()["inbound"] == 1
            stored.refresh_from_db()
            assert stored.attempts == expected_attempts
        assert stored.status == "processed" and stored.next_attempt_at is None
        assert len(calls["flaky"]) == 3
        assert webhooks_sweep_task()["inbound"] == 0

    def test_retries_are_bounded_then_left_to_staff(self, api, stripe_secret, settings):
        settings.WEBHOOK_INBOUND_RETRY_SCHEDULE = [10, 20]
        state["broken"] = True
        post(api, event(type_="paydesk_test.broken"), stripe_secret)
        stored = InboundEvent.objects.get()
        inbound_event_process_task.delay(str(stored.pk))  # the first try (eager)
        for _ in range(3):
            InboundEvent.objects.filter(next_attempt_at__isnull=False).update(
                next_attempt_at=timezone.now() - timedelta(seconds=1)
            )
            webhooks_sweep_task()
        stored.refresh_from_db()
        assert (stored.status, stored.attempts, stored.next_attempt_at) == ("failed", 3, None)
        assert len(calls["broken"]) == 3
        assert webhooks_sweep_task()["inbound"] == 0
        assert inbound_event_process(event_id=stored.pk) == "not-due"  # a stray message changes nothing
        assert len(calls["broken"]) == 3

    def test_with_a_broker_the_task_retries_after_the_events_own_backoff(self, api, stripe_secret):
        state["broken"] = True
        post(api, event(type_="paydesk_test.broken"), stripe_secret)  # stored; its task not run
        stored = InboundEvent.objects.get()
        with mock.patch.object(inbound_event_process_task, "retry", side_effect=Retry()) as retry:
            with pytest.raises(Retry):
                inbound_event_process_task(str(stored.pk))  # a worker's call: not eager
        stored.refresh_from_db()
        countdown = retry.call_args.kwargs["countdown"]
        assert 27 <= countdown <= 33
        assert abs((stored.next_attempt_at - stored.processed_at).total_seconds() - countdown) < 0.01
        # The retry message arrives on time and runs it; an early duplicate does not.
        assert inbound_event_process(event_id=stored.pk, now=timezone.now()) == "not-due"
        state["broken"] = False
        assert inbound_event_process(event_id=stored.pk, now=stored.next_attempt_at) == "processed"

    def test_failed_event_is_kept_with_its_error_and_rerun_from_admin(
        self, api, stripe_secret, admin_client, django_capture_on_commit_callbacks
    ):
        state["broken"] = True
        with django_capture_on_commit_callbacks(execute=True):
            assert post(api, event(type_="paydesk_test.broken"), stripe_secret).status_code == 200
        stored = InboundEvent.objects.get()
        assert stored.status == "failed" and "bug in handler" in stored.last_error
        attempts = stored.attempts
        assert attempts == 1  # eager: no inline retries inside the provider's request

        state["broken"] = False  # the bug is fixed; staff re-run it
        url = operator_url(InboundEvent, "reprocess_inbound_event", [stored])
        response = admin_client.post(url, {"token": str(uuid.uuid4()), "reason": "handler bug fixed"})
        assert response.status_code == 302
        stored.refresh_from_db()
        assert stored.status == "processed" and stored.last_error == "" and stored.attempts == attempts + 1

    def test_a_failing_handler_keeps_nothing_it_wrote_and_the_failure_is_recorded(self, api, stripe_secret):
        state["broken"] = True
        post(api, event(type_="paydesk_test.writes_then_fails"), stripe_secret)  # stored; its task not run
        stored = InboundEvent.objects.get()
        with pytest.raises(HandlerFailed, match="failed after writing"):
            inbound_event_process(event_id=stored.pk)
        assert len(calls["writes"]) == 1 and not Merchant.objects.filter(pk=calls["writes"][0]).exists()
        stored.refresh_from_db()
        assert (stored.status, stored.attempts) == ("failed", 1)
        assert stored.last_error == "ValueError: failed after writing" and stored.next_attempt_at is not None

        state["broken"] = False
        assert inbound_event_process(event_id=stored.pk, now=stored.next_attempt_at) == "processed"
        assert Merchant.objects.filter(pk=calls["writes"][1]).exists()
        stored.refresh_from_db()
        assert (stored.status, stored.attempts, stored.last_error, stored.next_attempt_at) == ("processed", 2, "", None)

    def test_a_failure_does_not_overwrite_what_another_processor_recorded_meanwhile(self, api, stripe_secret):
        """Between the failed run's rollback and its failure record the event is unlocked:
        a processor that ran it then (the sweep, a retry) keeps its outcome."""
        state["broken"] = True
        post(api, event(type_="paydesk_test.writes_then_fails"), stripe_secret)
        stored = InboundEvent.objects.get()
        record_failure = services._inbound_event_failed

        def another_processor_first(*args, **kwargs):
            state["broken"] = False
            assert inbound_event_process(event_id=stored.pk) == "processed"
            return record_failure(*args, **kwargs)

        with mock.patch.object(services, "_inbound_event_failed", another_processor_first):
            assert inbound_event_process(event_id=stored.pk) == "processed"  # no HandlerFailed: it was run
        stored.refresh_from_db()
        assert (stored.status, stored.attempts, stored.last_error) == ("processed", 1, "")
        assert [Merchant.objects.filter(pk=pk).exists() for pk in calls["writes"]] == [False, True]

    def test_events_arriving_in_any_order_are_each_processed(
        self, api, stripe_secret, django_capture_on_commit_callbacks
    ):
        with django_capture_on_commit_callbacks(execute=True):
            for event_id in ["evt_3", "evt_1", "evt_2"]:
                post(api, event(event_id), stripe_secret)
        assert sorted(calls["ok"]) == ["evt_1", "evt_2", "evt_3"]
        assert set(InboundEvent.objects.values_list("status", flat=True)) == {"processed"}


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_concurrent_duplicate_deliveries_store_and_process_once(settings):
    settings.STRIPE_WEBHOOK_SECRET = "whsec_race"
    barrier, codes = threading.Barrier(6), []
    body = json.dumps(event("evt_race"))

    def deliver():
        client = APIClient()
        barrier.wait()
        try:
            codes.append(signed_post(client, STRIPE_URL, body, secret="whsec_race").status_code)
        finally:
            connection.close()

    threads = [threading.Thread(target=deliver) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert codes == [200] * 6
    assert InboundEvent.objects.filter(event_id="evt_race").count() == 1
    assert calls["ok"] == ["evt_race"]
    assert InboundEvent.objects.get(event_id="evt_race").status == "processed"


class TestProviderWebhook:
    URL = "/api/v1/payments/webhook"

    def body(self, **over):
        return {
            "provider": "mock",
            "provider_payment_id": "mock_pay_1",
            "status": "paid",
            "amount": 1000,
            "currency": "usd",
            **over,
        }

    def test_signed_notification_is_stored_verified(self, api, settings, django_capture_on_commit_callbacks):
        with django_capture_on_commit_callbacks(execute=True):
            response = signed_post(
                api, self.URL, self.body(), secret=settings.MOCK_WEBHOOK_SECRET, header="X-Paydesk-Signature"
            )
        assert response.status_code == 200
        stored = InboundEvent.objects.get()
        assert (stored.provider, stored.type, stored.signature_verified) == ("mock", "payment.paid", True)

    def test_identical_repeat_is_the_same_event(self, api, settings):
        for _ in range(2):
            signed_post(api, self.URL, self.body(), secret=settings.MOCK_WEBHOOK_SECRET, header="X-Paydesk-Signature")
        assert InboundEvent.objects.count() == 1
        signed_post(
            api, self.URL, self.body(status="failed"), secret=settings.MOCK_WEBHOOK_SECRET, header="X-Paydesk-Signature"
        )
        assert InboundEvent.objects.count() == 2

    def test_bad_signature_is_400(self, api):
        response = signed_post(api, self.URL, self.body(), secret="wrong", header="X-Paydesk-Signature")
        assert response.status_code == 400 and response.json()["error"]["param"] == "X-Paydesk-Signature"
        assert not InboundEvent.objects.exists()

    def test_missing_signature_says_so_in_our_words_naming_the_header(self, api):
        response = api.post(self.URL, self.body(), format="json")
        assert response.status_code == 400
        error = response.json()["error"]
        assert (error["type"], error["param"]) == ("invalid_request_error", "X-Paydesk-Signature")
        assert "X-Paydesk-Signature header is missing" in error["message"]
        assert "Stripe" not in error["message"] and "without_verification" not in error["message"]
        assert not InboundEvent.objects.exists()

    def test_provider_secret_comes_from_the_environment(self, api, monkeypatch):
        monkeypatch.setenv("ACME_WEBHOOK_SECRET", "acme_secret")
        response = signed_post(
            api, self.URL, self.body(provider="acme"), secret="acme_secret", header="X-Paydesk-Signature"
        )
        assert response.status_code == 200
        assert InboundEvent.objects.get().provider == "acme"

    @pytest.mark.parametrize(
        "over,param",
        [
            ({"provider": "nobody"}, "provider"),
            ({"provider": "stripe"}, "provider"),
            ({"amount": 10.5}, "amount"),
            ({"currency": "zzz"}, "currency"),
            ({"status": ""}, "status"),
        ],
    )
    def test_bad_body_is_400_naming_param(self, api, settings, over, param):
        response = signed_post(
            api, self.URL, self.body(**over), secret=settings.MOCK_WEBHOOK_SECRET, header="X-Paydesk-Signature"
        )
        assert response.status_code == 400
        assert response.json()["error"]["param"] == param
        assert not InboundEvent.objects.exists()
