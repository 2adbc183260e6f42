"""The two inbound webhook URLs take anyone's body, unauthenticated: the signature is
checked on the raw bytes before the body is parsed, and the parse is the project's one
bounded JSON parser. Deep nesting, NaN or a body signed for another provider are a 400
in the error shape, with nothing stored."""

import json
import os

import pytest

from config.api.parsers import MAX_DEPTH
from webhooks.models import InboundEvent

from .support import signed_post, stripe_event

pytestmark = pytest.mark.django_db

STRIPE_URL = "/api/v1/webhooks/stripe"
PROVIDER_URL = "/api/v1/payments/webhook"
DEEP = "[" * 1500 + "]" * 1500


def notification(**over) -> dict:
    return {
        "provider": "mock",
        "provider_payment_id": "mock_pay_1",
        "status": "paid",
        "amount": 1000,
        "currency": "usd",
        **over,
    }


def with_field(body: dict, raw_value: str) -> str:
    """The body's JSON with one more field whose value is `raw_value`, verbatim."""
    return json.dumps(body)[:-1] + f', "extra": {raw_value}}}'


def assert_400(response, *, param=None, says=None) -> dict:
    assert response.status_code == 400, response.content
    assert response["Content-Type"].startswith("application/json")
    error = response.json()["error"]
    assert (error["type"], error["param"]) == ("invalid_request_error", param), error
    if says:
        assert says in error["message"], error["message"]
    assert not InboundEvent.objects.exists()
    return error


def sign_as_mock(client, body, settings):
    return signed_post(client, PROVIDER_URL, body, secret=settings.MOCK_WEBHOOK_SECRET, header="X-Paydesk-Signature")


def unsigned(client, url, raw: str, **headers):
    return client.generic("POST", url, raw, content_type="application/json", **headers)


class TestProviderWebhook:
    def test_unsigned_deep_json_is_refused_by_its_signature(self, api):
        assert_400(unsigned(api, PROVIDER_URL, with_field(notification(), DEEP)), param="X-Paydesk-Signature")

    def test_the_signature_is_checked_before_the_body_is_parsed(self, api):
        """Malformed JSON with a wrong signature: the answer is about the signature, so
        an unsigned caller learns nothing of the parser and never runs it."""
        response = unsigned(api, PROVIDER_URL, '{"provider": "mock", ', HTTP_X_PAYDESK_SIGNATURE="t=1,v1=00")
        error = assert_400(response, param="X-Paydesk-Signature", says="Signature verification failed")
        assert "Malformed" not in error["message"]

    def test_signed_deep_json_is_400(self, api, settings):
        raw = with_field(notification(), DEEP)
        response = sign_as_mock(api, raw, settings)
        assert_400(response, says=f"deeper than {MAX_DEPTH}")

    def test_signed_nan_is_400_not_a_database_error(self, api, settings):
        raw = with_field(notification(), "NaN")
        response = sign_as_mock(api, raw, settings)
        assert_400(response)

    def test_a_body_signed_with_one_providers_secret_cannot_speak_for_another(self, api, settings, monkeypatch):
        monkeypatch.setenv("ACME_WEBHOOK_SECRET", "acme_secret")
        forged = notification(provider="acme")
        assert_400(sign_as_mock(api, forged, settings), param="provider")
        genuine = signed_post(api, PROVIDER_URL, forged, secret="acme_secret", header="X-Paydesk-Signature")
        assert genuine.status_code == 200, genuine.content
        assert InboundEvent.objects.get().provider == "acme"

    def test_no_provider_secret_at_all_is_400(self, api, settings, monkeypatch):
        settings.MOCK_WEBHOOK_SECRET = ""
        settings.HTTP_WEBHOOK_SECRET = ""
        for name in [n for n in os.environ if n.endswith("_WEBHOOK_SECRET")]:
            monkeypatch.delenv(name)
        response = signed_post(api, PROVIDER_URL, notification(), secret="any", header="X-Paydesk-Signature")
        assert_400(response, param="provider", says="No provider webhook secret")


class TestStripeWebhook:
    def event(self) -> dict:
        return stripe_event("payment_intent.succeeded", event_id="evt_deep")

    def test_unsigned_deep_json_is_refused_by_its_signature(self, api, stripe_secret):
        assert_400(unsigned(api, STRIPE_URL, with_field(self.event(), DEEP)), param="Stripe-Signature")

    def test_signed_deep_json_is_400(self, api, stripe_secret):
        response = signed_post(api, STRIPE_URL, with_field(self.event(), DEEP), secret=stripe_secret)
        assert_400(response, says=f"deeper than {MAX_DEPTH}")

    def test_deep_json_accepted_unverified_in_development_is_still_400(self, api, settings):
        settings.DEBUG = True
        settings.STRIPE_WEBHOOK_SECRET = ""
        assert_400(unsigned(api, STRIPE_URL, with_field(self.event(), DEEP)), says=f"deeper than {MAX_DEPTH}")

    def test_signed_infinity_is_400_not_a_database_error(self, api, stripe_secret):
        response = signed_post(api, STRIPE_URL, with_field(self.event(), "-Infinity"), secret=stripe_secret)
        assert_400(response)

    def test_a_real_event_within_the_bounds_is_accepted(self, api, stripe_secret):
        response = signed_post(api, STRIPE_URL, stripe_event("invoice.paid", event_id="evt_ok"), secret=stripe_secret)
        assert response.status_code == 200, response.content
