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
