"""System checks for payments (registered in PaymentsConfig.ready())."""

from django.conf import settings
from django.core.checks import Tags, Warning, register


@register(Tags.security, deploy=True)
def mock_provider_check(app_configs, **kwargs):
    """`check --deploy` warns while the mock provider is on: its checkout page lets anyone
    with the link mark a payment paid and book it, or take a credit pack for free."""
    if not settings.MOCK_PROVIDER_ENABLED:
        return []
    return [
        Warning(
            "MOCK_PROVIDER_ENABLED is on: anyone who opens a mock checkout page (/pay/mock/<id>, "
            "/api/v1/credits/checkout/mock/<id>) can mark its payment paid or take its credits.",
            hint="Unset MOCK_PROVIDER_ENABLED in production (it is off by default with DEBUG off).",
            id="payments.W001",
        )
    ]


ESEWA_TEST_HOSTS = ("rc-epay.esewa.com.np", "rc.esewa.com.np", "uat.esewa.com.np")
ESEWA_TEST_SECRET = "8gBm/:&EnhH.1/q"  # published on eSewa's developer site
KHALTI_TEST_HOSTS = ("dev.khalti.com", "a.khalti.com")


@register(Tags.security, deploy=True)
def nepal_wallets_test_mode_check(app_configs, **kwargs):
    """`check --deploy` warns while eSewa or Khalti is on with its test endpoint or eSewa's
    public test secret: test wallets pay with published credentials, so a payment booked
    there is money nobody paid."""
    found = []
    if settings.ESEWA_SECRET_KEY and (
        settings.ESEWA_SECRET_KEY == ESEWA_TEST_SECRET or any(h in settings.ESEWA_BASE_URL for h in ESEWA_TEST_HOSTS)
    ):
        found.append("eSewa (ESEWA_BASE_URL / ESEWA_SECRET_KEY)")
    if settings.KHALTI_SECRET_KEY and any(h in settings.KHALTI_BASE_URL for h in KHALTI_TEST_HOSTS):
        found.append("Khalti (KHALTI_BASE_URL)")
    if not found:
        return []
    return [
        Warning(
            f"{' and '.join(found)} point at the provider's test environment: its payments are paid "
            "with public test credentials.",
            hint="Set ESEWA_BASE_URL=https://epay.esewa.com.np with your own ESEWA_PRODUCT_CODE and "
            "ESEWA_SECRET_KEY, and KHALTI_BASE_URL=https://khalti.com/api/v2/ with your live KHALTI_SECRET_KEY.",
            id="payments.W002",
        )
    ]
