"""The replaced services' names for settings, read beside Paydesk's own (README
"Configuration"): each alias is read, and both names set to different values stop start-up."""

import runpy
from pathlib import Path

import pytest
from django.core.exceptions import ImproperlyConfigured

from config.tests.test_settings_and_commands import PROD_ENV, manage

SETTINGS = Path(__file__).resolve().parents[1] / "settings.py"
NAMES = [
    "CORS_ORIGINS",
    "ALLOWED_ORIGINS",
    "DEFAULT_PAYMENT_PROVIDER",
    "PAYMENT_PROVIDER",
    "NEXTAUTH_SECRET",
    "NEXTAUTH_MERCHANT",
    "WEBHOOK_URLS",
    "WEBHOOK_URLS_SECRET",
    "STRIPE_SECRET_KEY",
    "DEBUG",
]


@pytest.fixture
def load(monkeypatch):
    """load(**env) -> the settings module's names, as config/settings.py computes them from
    exactly this environment (the running Django settings are not touched)."""

    def run(**env):
        for name in NAMES:
            monkeypatch.delenv(name, raising=False)
        for name, value in env.items():
            monkeypatch.setenv(name, value)
        return runpy.run_path(str(SETTINGS))

    return run


class TestAllowedOrigins:
    def test_the_credits_backends_json_array_is_read(self, load):
        loaded = load(ALLOWED_ORIGINS='["https://shop.example", "https://admin.example"]')
        assert loaded["CORS_ALLOWED_ORIGINS"] == ["https://shop.example", "https://admin.example"]
        assert loaded["CORS_ALLOW_ALL_ORIGINS"] is False

    def test_cors_origins_alone_as_before(self, load):
        assert load(CORS_ORIGINS="https://a.example,https://b.example")["CORS_ALLOWED_ORIGINS"] == [
            "https://a.example",
            "https://b.example",
        ]

    def test_both_naming_the_same_origins_in_another_syntax_is_fine(self, load):
        loaded = load(
            CORS_ORIGINS="https://b.example, https://a.example",
            ALLOWED_ORIGINS='["https://a.example","https://b.example"]',
        )
        assert sorted(loaded["CORS_ALLOWED_ORIGINS"]) == ["https://a.example", "https://b.example"]

    def test_both_set_differently_is_refused_naming_both(self, load):
        with pytest.raises(ImproperlyConfigured, match="CORS_ORIGINS and ALLOWED_ORIGINS"):
            load(CORS_ORIGINS="https://a.example", ALLOWED_ORIGINS='["https://evil.example"]')

    def test_one_set_empty_counts_as_not_set(self, load):
        assert load(CORS_ORIGINS="", ALLOWED_ORIGINS='["https://a.example"]')["CORS_ALLOWED_ORIGINS"] == [
            "https://a.example"
        ]

    def test_malformed_json_is_refused_saying_so(self, load):
        with pytest.raises(ImproperlyConfigured, match="JSON array"):
            load(ALLOWED_ORIGINS='["https://a.example"')


class TestPaymentProvider:
    def test_payment_provider_is_the_default_provider(self, load):
        assert load(PAYMENT_PROVIDER="http")["DEFAULT_PAYMENT_PROVIDER"] == "http"

    def test_default_payment_provider_alone_as_before(self, load):
        assert load(DEFAULT_PAYMENT_PROVIDER="stripe")["DEFAULT_PAYMENT_PROVIDER"] == "stripe"

    def test_neither_keeps_the_computed_default(self, load):
        assert load()["DEFAULT_PAYMENT_PROVIDER"] == "mock"  # DEBUG on, no Stripe key
        assert load(STRIPE_SECRET_KEY="sk_test_x")["DEFAULT_PAYMENT_PROVIDER"] == "stripe"

    def test_both_the_same_is_fine(self, load):
        assert load(PAYMENT_PROVIDER="http", DEFAULT_PAYMENT_PROVIDER="http")["DEFAULT_PAYMENT_PROVIDER"] == "http"

    def test_both_set_differently_is_refused_naming_both(self, load):
        with pytest.raises(ImproperlyConfigured, match="DEFAULT_PAYMENT_PROVIDER and PAYMENT_PROVIDER"):
            load(PAYMENT_PROVIDER="stripe", DEFAULT_PAYMENT_PROVIDER="mock")


def test_nextauth_secret_and_merchant_are_read(load):
    loaded = load(NEXTAUTH_SECRET="s3cret", NEXTAUTH_MERCHANT=" Acme ")
    assert (loaded["NEXTAUTH_SECRET"], loaded["NEXTAUTH_MERCHANT"]) == ("s3cret", "Acme")
    assert load()["NEXTAUTH_SECRET"] == ""  # off unless set


@pytest.mark.parametrize(
    "pair",
    [
        {"CORS_ORIGINS": "https://a.example", "ALLOWED_ORIGINS": '["https://b.example"]'},
        {"DEFAULT_PAYMENT_PROVIDER": "stripe", "PAYMENT_PROVIDER": "http"},
    ],
)
def test_a_conflicting_pair_stops_start_up_naming_both(pair):
    result = manage("check", env_overrides={**PROD_ENV, **pair})
    assert result.returncode != 0
    for name in pair:
        assert name in result.stderr


class TestWebhookUrls:
    def test_comma_separated_urls_are_read_once_each(self, load):
        loaded = load(WEBHOOK_URLS="https://ops.example/hook, http://localhost:3001/,https://ops.example/hook")
        assert loaded["WEBHOOK_URLS"] == ["https://ops.example/hook", "http://localhost:3001/"]
        assert loaded["WEBHOOK_URLS_SECRET"].startswith("whsec_insecure")  # DEBUG: a flagged dev secret

    def test_none_by_default(self, load):
        assert load()["WEBHOOK_URLS"] == []

    def test_a_url_that_is_not_one_is_refused_naming_it(self, load):
        with pytest.raises(ImproperlyConfigured, match="ftp://ops.example"):
            load(WEBHOOK_URLS="https://ok.example,ftp://ops.example")

    def test_with_debug_off_the_secret_is_required(self, load):
        with pytest.raises(ImproperlyConfigured, match="WEBHOOK_URLS_SECRET"):
            load(**PROD_ENV, WEBHOOK_URLS="https://ops.example/hook")
        loaded = load(**PROD_ENV, WEBHOOK_URLS="https://ops.example/hook", WEBHOOK_URLS_SECRET="whsec_ops")
        assert loaded["WEBHOOK_URLS_SECRET"] == "whsec_ops"
        assert load(**PROD_ENV)["WEBHOOK_URLS_SECRET"] == ""  # not needed without WEBHOOK_URLS
