"""Domain errors: raised by services, knowing nothing of HTTP.

config.api.errors maps each to API.md's status, type and code.
"""


class DomainError(Exception):
    default_message = "The request could not be completed."

    def __init__(self, message: str | None = None, *, param: str | None = None):
        self.message = message or self.default_message
        self.param = param
        super().__init__(self.message)


class InvalidRequest(DomainError):
    default_message = "Invalid request."


class NotFound(DomainError):
    default_message = "No such object."


class PermissionDenied(DomainError):
    default_message = "You do not have permission to do this."


class Conflict(DomainError):
    default_message = "The request conflicts with the current state."


class IllegalTransition(Conflict):
    default_message = "This state transition is not allowed."


class InsufficientFunds(DomainError):
    default_message = "Insufficient funds."


class CardDeclined(DomainError):
    """The saved card was declined: a 402 like a wallet shortfall, under its own code."""

    default_message = "The card was declined."


class InsufficientCredits(DomainError):
    default_message = "Insufficient credits."


class QuotaExceeded(DomainError):
    default_message = "The subscription has no payment creations left this period."


class ProviderError(DomainError):
    default_message = "The payment provider failed."


class ServiceUnavailable(DomainError):
    default_message = "A service this request needs is unavailable."
