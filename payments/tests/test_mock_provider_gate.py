"""The mock provider is for development: off in production unless MOCK_PROVIDER_ENABLED.

Its checkout page marks a payment paid for whoever opens it, so with DEBUG off and no
MOCK_PROVIDER_ENABLED no payment can use it, its page is a 404 and the default provider
is never silently the mock.
"""

import io
from urllib.parse import urlsplit

import pytest
from django.core.checks.registry import registry
from django.core.management import call_command
from django.test import Client

from config.tests.test_settings_and_commands import PROD_ENV, manage
from payments.checks import mock_provider_check
from payments.identity.models import Subscription
from payments.models import Payment
from payments.services import payment_create
from webhooks.models import InboundEvent


@pytest.fixture
def production(settings):
    """What config/settings.py computes with DEBUG off, no Stripe key and no MOCK_PROVIDER_ENABLED."""
    settings.MOCK_PROVIDER_ENABLED = False
    settings.ESEWA_SECRET_KEY = ""  # its public test secret is the default only while DEBUG is on
    settings.DEFAULT_PAYMENT_PROVIDER = ""
    settings.STRIPE_SECRET_KEY = ""
    return settings


def test_settings_with_debug_off_turn_the_mock_off_and_name_no_default_provider():
    code = "from django.conf import settings as s; print(s.MOCK_PROVIDER_ENABLED, repr(s.DEFAULT_PAYMENT_PROVIDER))"
    result = manage("shell", "-c", code, env_overrides=PROD_ENV, drop=("MOCK_PROVIDER_ENABLED", "STRIPE_SECRET_KEY"))
    assert result.stdout.split()[-2:] == ["False", "''"], result.stdout + result.stderr
    stripe = manage("shell", "-c", code, env_overrides={**PROD_ENV, "STRIPE_SECRET_KEY": "sk_test_" + "x" * 24})
    assert stripe.stdout.split()[-2:] == ["False", "'stripe'"], stripe.stdout + stripe.stderr
    enabled = manage("shell", "-c", code, env_overrides={**PROD_ENV, "MOCK_PROVIDER_ENABLED": "true"})
    assert enabled.stdout.split()[-2:] == ["True", "'mock'"], enabled.stdout + enabled.stderr


@pytest.mark.django_db
class TestProduction:
    @pytest.mark.parametrize("body", [{}, {"provider": "mock"}])
    def test_a_payment_cannot_use_the_mock_400_naming_provider(self, production, merchant, merchant_api, body):
        tokens = Subscription.objects.get(merchant=merchant).tokens_remaining
        response = merchant_api.post(
            "/api/v1/payments", {"order_id": "o-1", "amount": 9_999_900, "currency": "usd", **body}, format="json"
        )
        assert response.status_code == 400, response.content
        error = response.json()["error"]
        assert (error["type"], error["param"]) == ("invalid_request_error", "provider")
        assert not Payment.objects.exists()
        assert Subscription.objects.get(merchant=merchant).tokens_remaining == tokens  # no quota token taken

    def test_no_default_names_what_is_available(self, production, merchant):
        production.HTTP_PROVIDER_URL = "https://links.example.com/api"
        from config.errors import InvalidRequest

        with pytest.raises(InvalidRequest, match=r"available: http\)") as raised:
            payment_create(merchant=merchant, order_id="o-1", amount=100, currency="usd")
        assert raised.value.param == "provider"

    def test_a_mock_payment_page_is_404_and_its_pay_button_changes_nothing(self, settings, merchant):
        payment = payment_create(merchant=merchant, order_id="o-1", amount=9_999_900, currency="usd", provider="mock")
        path = urlsplit(payment.payment_url).path
        assert Client().get(path).status_code == 200  # while it is enabled
        settings.MOCK_PROVIDER_ENABLED = False
        browser = Client()
        assert browser.get(path).status_code == 404
        assert browser.post(path, {"action": "pay"}).status_code == 404
        payment.refresh_from_db()
        assert payment.status == "pending" and payment.mock_checkout.status == "pending"
        assert not InboundEvent.objects.exists()

    def test_an_explicit_mock_provider_enabled_brings_it_back(self, production, merchant):
        production.MOCK_PROVIDER_ENABLED = True
        payment = payment_create(merchant=merchant, order_id="o-1", amount=100, currency="usd", provider="mock")
        assert payment.provider == "mock" and Client().get(urlsplit(payment.payment_url).path).status_code == 200


def test_check_deploy_warns_while_the_mock_provider_is_enabled(settings):
    assert mock_provider_check in registry.get_checks(include_deployment_checks=True)
    assert mock_provider_check not in registry.get_checks()  # a deploy check only
    settings.MOCK_PROVIDER_ENABLED = True
    assert [m.id for m in mock_provider_check(None)] == ["payments.W001"]
    settings.MOCK_PROVIDER_ENABLED = False
    assert mock_provider_check(None) == []


def test_check_deploy_with_mock_provider_enabled_in_production_warns():
    result = manage("check", "--deploy", env_overrides={**PROD_ENV, "MOCK_PROVIDER_ENABLED": "true"})
    assert "payments.W001" in result.stderr + result.stdout and "MOCK_PROVIDER_ENABLED" in result.stderr


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("scenario", ["payment-create", "payment-webhook"])
def test_the_payment_benchmarks_run_with_the_mock_off(production, scenario):
    """`bench` turns the mock on for its own run, whatever the environment says."""
    production.MOCK_WEBHOOK_SECRET = ""
    out = io.StringIO()
    call_command("bench", scenario, "--n", "3", stdout=out, stderr=io.StringIO())
    assert '"ledger_audit": "ok"' in out.getvalue()
    assert production.MOCK_PROVIDER_ENABLED is False  # and only for its run
