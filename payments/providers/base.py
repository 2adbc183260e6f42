"""The provider interface. A provider turns a committed Payment into something a payer
can pay (a URL and/or a client secret), tells its current status when asked
(reconciliation), refunds, and charges a saved payment method off-session (charges).

Providers never change a payment's state themselves: state changes come from their
verified webhooks or from reconciliation (outcomes.py, reconciliation.py). Every call
takes an idempotency key so a retried or duplicated call never charges twice at the
provider either.
"""

from abc import ABC, abstractmethod
from dataclasses import dataclass, field

from django.conf import settings

from config.errors import InvalidRequest


class ProviderFailure(Exception):
    """A provider call that did not work. Its str() is `message`: clean words a merchant
    may read (an API answer, a failure_reason). `detail` is what actually happened (the
    HTTP library's or the provider's own text: hosts, ports, request ids, response
    bodies), for the log and the staff side of the timeline only."""

    def __init__(self, message: str, *, detail: str = ""):
        super().__init__(message)
        self.message = message
        self.detail = detail or message


class ProviderUnavailable(ProviderFailure):
    """Network trouble, timeout or a 5xx: the call may be retried with the same key."""


class ProviderDeclined(ProviderFailure):
    """The provider refused the request (a 4xx: bad card, invalid parameters)."""


def failure_detail(exc: BaseException) -> str:
    """The staff-only account of an exception: a provider's `detail`, else its type and text."""
    if isinstance(exc, ProviderFailure):
        return exc.detail
    return f"{type(exc).__name__}: {exc}"


@dataclass(frozen=True)
class CreatedPayment:
    provider_payment_id: str
    payment_url: str = ""
    client_secret: str = ""


@dataclass(frozen=True)
class RefundResult:
    provider_refund_id: str
    status: str  # "succeeded" | "pending" | "failed"


@dataclass(frozen=True)
class ProviderStatus:
    """Where a payment stands at its provider, as its status API tells it.

    `status` is one of pending, succeeded, failed, canceled, expired. `amount` (minor
    units) and `currency`, when the provider says what it collected, are checked against
    the payment: a mismatch settles nothing and is flagged. `refunded` is "full" or
    "partial" when the provider reports the money collected and then refunded at its end.
    `reason` is the failure_reason of a payment it fails. `data` is what the provider
    said, for the timeline (its own status, reference ids)."""

    status: str
    amount: int | None = None
    currency: str | None = None
    refunded: str = ""
    reason: str = ""
    data: dict = field(default_factory=dict)


@dataclass(frozen=True)
class OffSessionResult:
    provider_payment_id: str
    status: str  # "succeeded" | "failed" | "pending" (still processing: its webhook or a later look settles it)
    failure_reason: str = ""

    @property
    def succeeded(self) -> bool:
        return self.status == "succeeded"


class PaymentProvider(ABC):
    name: str
    # False: the provider has no refund API; a refund through Paydesk is refused up front
    # (InvalidRequest, with `refunds_unsupported_message`) instead of failing at the provider.
    supports_refunds: bool = True
    refunds_unsupported_message: str = ""

    def is_available(self) -> bool:
        return True

    def validate_payment(self, *, amount: int, currency: str) -> None:
        """Refuse (InvalidRequest naming the field) a payment this provider can never take,
        before anything is created: a currency it does not handle, an amount under its minimum."""
        return None

    def retrieve_outcome(self, *, payment) -> ProviderStatus:
        """Where the payment stands at the provider, with what it collected when it says.
        Providers whose status API reports amounts override this; others answer retrieve_status."""
        return ProviderStatus(status=self.retrieve_status(payment=payment))

    @abstractmethod
    def create_payment(self, *, payment, idempotency_key: str) -> CreatedPayment: ...

    @abstractmethod
    def retrieve_status(self, *, payment) -> str:
        """One of pending, succeeded, failed, canceled, expired."""

    @abstractmethod
    def refund(self, *, payment, amount: int, idempotency_key: str) -> RefundResult: ...

    @abstractmethod
    def cancel_payment(self, *, payment) -> None:
        """Stop the payer from paying a payment Paydesk gave up on (canceled or expired).
        Best effort: a payment paid anyway is flagged when its success arrives."""

    @abstractmethod
    def charge_off_session(
        self, *, customer, amount: int, currency: str, idempotency_key: str, description: str, metadata: dict
    ) -> OffSessionResult: ...

    @abstractmethod
    def retrieve_charge(self, *, provider_charge_id: str) -> OffSessionResult:
        """Where an off-session charge that answered `pending` stands now."""


_PROVIDERS: dict[str, type[PaymentProvider]] = {}


def register(cls: type[PaymentProvider]) -> type[PaymentProvider]:
    _PROVIDERS[cls.name] = cls
    return cls


def provider_names() -> list[str]:
    return sorted(_PROVIDERS)


def get_provider(name: str) -> PaymentProvider:
    try:
        return _PROVIDERS[name]()
    except KeyError:
        raise InvalidRequest(f"Unknown provider {name!r}. Known: {', '.join(provider_names())}.", param="provider")


def available_provider_names() -> list[str]:
    return [name for name in provider_names() if _PROVIDERS[name]().is_available()]


def resolve_provider_name(*, merchant, requested: str | None) -> str:
    """The named provider, else the merchant's region's default, else DEFAULT_PAYMENT_PROVIDER.
    InvalidRequest (param `provider`) when that is none, unknown, or not available here."""
    name = (
        requested
        or (merchant.region.default_provider if merchant.region_id else "")
        or (settings.DEFAULT_PAYMENT_PROVIDER)
    )
    if not name:
        available = ", ".join(available_provider_names()) or "none"
        raise InvalidRequest(
            f"This installation has no default payment provider: name one (available: {available}).",
            param="provider",
        )
    provider = get_provider(name)
    if not provider.is_available():
        raise InvalidRequest(f"Provider {name!r} is not configured on this installation.", param="provider")
    return name
