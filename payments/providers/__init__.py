"""Payment providers behind one small interface (base.PaymentProvider), by name."""

from .base import (
    CreatedPayment,
    OffSessionResult,
    PaymentProvider,
    ProviderDeclined,
    ProviderFailure,
    ProviderStatus,
    ProviderUnavailable,
    RefundResult,
    failure_detail,
    get_provider,
    provider_names,
    resolve_provider_name,
)

__all__ = [
    "CreatedPayment",
    "OffSessionResult",
    "PaymentProvider",
    "ProviderDeclined",
    "ProviderFailure",
    "ProviderStatus",
    "ProviderUnavailable",
    "RefundResult",
    "failure_detail",
    "get_provider",
    "provider_names",
    "resolve_provider_name",
]
