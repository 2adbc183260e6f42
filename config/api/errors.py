"""One exception handler for the whole API: everything becomes API.md's error shape.

{"error": {"type", "code", "message", "param"}}
"""

import logging

import kombu.exceptions
import redis.exceptions
from django.core.exceptions import ObjectDoesNotExist, RequestDataTooBig, TooManyFieldsSent, TooManyFilesSent
from django.core.exceptions import PermissionDenied as DjangoPermissionDenied
from django.core.exceptions import ValidationError as DjangoValidationError
from django.db import InterfaceError, OperationalError
from django.http import Http404
from rest_framework import exceptions as drf
from rest_framework.response import Response

from config import errors as domain

logger = logging.getLogger("paydesk.api")


class IdempotencyError(domain.DomainError):
    default_message = "This Idempotency-Key was used with a different request."


# Domain error class -> (status, type, code). Subclasses inherit their parent's mapping.
DOMAIN_ERRORS: dict[type[domain.DomainError], tuple[int, str, str]] = {
    domain.InvalidRequest: (400, "invalid_request_error", "invalid_request_error"),
    IdempotencyError: (400, "idempotency_error", "idempotency_error"),
    domain.InsufficientFunds: (402, "payment_error", "insufficient_funds"),
    domain.CardDeclined: (402, "payment_error", "card_declined"),
    domain.InsufficientCredits: (402, "payment_error", "insufficient_credits"),
    domain.QuotaExceeded: (402, "payment_error", "quota_exceeded"),
    domain.PermissionDenied: (403, "permission_error", "permission_error"),
    domain.NotFound: (404, "not_found", "not_found"),
    domain.Conflict: (409, "conflict", "conflict"),
    domain.ProviderError: (502, "provider_error", "provider_error"),
    domain.ServiceUnavailable: (503, "service_unavailable", "service_unavailable"),
}


def error_body(type_: str, message: str, *, code: str | None = None, param: str | None = None) -> dict:
    return {"error": {"type": type_, "code": code or type_, "message": message, "param": param}}


def error_response(status: int, type_: str, message: str, *, code=None, param=None, headers=None) -> Response:
    return Response(error_body(type_, message, code=code, param=param), status=status, headers=headers)


def _first_validation_error(detail, path: str = "") -> tuple[str | None, str]:
    """Walk DRF's nested error detail to the first message and its field path."""
    if isinstance(detail, dict):
        for key, value in detail.items():
            if key == "non_field_errors":
                param, message = _first_validation_error(value, path)
                return (path or None), message
            if isinstance(key, int) or (isinstance(key, str) and key.isdigit()):
                sub = f"{path}[{key}]"  # ListField errors come keyed by index: same path style as lists
            else:
                sub = f"{path}.{key}" if path else str(key)
            if isinstance(value, list) and value and not isinstance(value[0], (dict, list)):
                return sub, str(value[0])
            return _first_validation_error(value, sub)
    if isinstance(detail, list):
        for index, value in enumerate(detail):
            if isinstance(value, (dict, list)) and value:
                return _first_validation_error(value, f"{path}[{index}]")
            if value:
                return (path or None), str(value)
    return (path or None), str(detail)


def _domain_mapping(exc: domain.DomainError) -> tuple[int, str, str]:
    for cls in type(exc).__mro__:
        if cls in DOMAIN_ERRORS:
            return DOMAIN_ERRORS[cls]
    return 400, "invalid_request_error", "invalid_request_error"


def exception_handler(exc, context):
    request = context.get("request") if context else None
    if isinstance(exc, domain.DomainError):
        status, type_, code = _domain_mapping(exc)
        return error_response(status, type_, exc.message, code=code, param=exc.param)
    if isinstance(exc, drf.ValidationError):
        param, message = _first_validation_error(exc.detail)
        if param and message:
            message = f"{param}: {message}"
        return error_response(400, "invalid_request_error", message, param=param)
    if isinstance(exc, DjangoValidationError):
        if hasattr(exc, "error_dict"):
            param, messages = next(iter(exc.message_dict.items()))
            return error_response(400, "invalid_request_error", f"{param}: {messages[0]}", param=param)
        return error_response(400, "invalid_request_error", exc.messages[0])
    if isinstance(exc, RequestDataTooBig):
        # Django refuses to read a body over DATA_UPLOAD_MAX_MEMORY_SIZE.
        return error_response(400, "invalid_request_error", "The request body is too large.")
    if isinstance(exc, (TooManyFieldsSent, TooManyFilesSent)):
        return error_response(400, "invalid_request_error", str(exc) or "Too many fields in the request.")
    if isinstance(exc, drf.ParseError):
        return error_response(400, "invalid_request_error", f"Malformed request body: {exc.detail}")
    if isinstance(exc, drf.Throttled):
        wait = int(exc.wait or 1)
        return error_response(
            429, "rate_limit_error", f"Too many requests. Retry in {wait} s.", headers={"Retry-After": str(wait)}
        )
    if isinstance(exc, (drf.NotAuthenticated, drf.AuthenticationFailed)):
        return error_response(
            401, "authentication_error", str(exc.detail), headers={"WWW-Authenticate": 'Bearer realm="api"'}
        )
    if isinstance(exc, (drf.PermissionDenied, DjangoPermissionDenied)):
        return error_response(403, "permission_error", str(getattr(exc, "detail", "")) or "Permission denied.")
    if isinstance(exc, (drf.NotFound, Http404, ObjectDoesNotExist)):
        return error_response(404, "not_found", "No such object.")
    if isinstance(exc, drf.MethodNotAllowed):
        return error_response(405, "invalid_request_error", str(exc.detail))
    if isinstance(exc, (drf.UnsupportedMediaType, drf.NotAcceptable)):
        return error_response(exc.status_code, "invalid_request_error", str(exc.detail))
    if isinstance(exc, drf.APIException):
        return error_response(exc.status_code, "api_error", str(exc.detail))
    dependency = unavailable_dependency(exc)
    if dependency:
        return unavailable_response(request, dependency)
    request_id = getattr(request, "request_id", None) if request is not None else None
    logger.exception("unhandled API error", extra={"path": getattr(request, "path", None)})
    return error_response(500, "api_error", f"An unexpected error occurred. Request id: {request_id}.")


# A dependency that could not be reached, or did not answer in time: the request may be
# retried as it is (503 service_unavailable with Retry-After), it is not a bug (500).
# Only "unreachable" errors: anything else these clients raise (a Redis command error, a
# refused message) says something is wrong with the request or the code, and stays a 500.
UNAVAILABLE: tuple[tuple[tuple[type[BaseException], ...], str], ...] = (
    # The connection refused or lost, too many clients, a lock or statement timeout.
    ((OperationalError, InterfaceError), "database"),
    # Django's Redis cache: redis-py's own classes, not the builtin ConnectionError/TimeoutError.
    ((redis.exceptions.ConnectionError, redis.exceptions.TimeoutError), "cache"),
    # A task sent while the broker is down: Celery raises kombu's OperationalError once its
    # publish retries are used up.
    ((kombu.exceptions.OperationalError,), "message broker"),
)


def unavailable_dependency(exc: BaseException) -> str | None:
    """Which dependency `exc` says is unavailable ("database", "cache", "message broker"), or None."""
    for classes, name in UNAVAILABLE:
        if isinstance(exc, classes):
            return name
    return None


def unavailable_body(request, dependency: str) -> dict:
    """A dependency could not be reached or gave up: a 503 the client may retry, not a
    500. The public answer names the kind of dependency only; the detail (hosts, ports,
    database names) goes to the log."""
    request_id = getattr(request, "request_id", None) if request is not None else None
    logger.exception("dependency unavailable", extra={"dependency": dependency, "path": getattr(request, "path", None)})
    return error_body(
        "service_unavailable", f"The {dependency} is unavailable; retry shortly. Request id: {request_id}."
    )


def unavailable_response(request, dependency: str) -> Response:
    return Response(unavailable_body(request, dependency), status=503, headers={"Retry-After": "1"})
