"""OpenAPI pieces shared by every endpoint: the error shape and the usual error responses."""

from drf_spectacular.utils import OpenApiResponse, inline_serializer
from rest_framework import serializers

ErrorOut = inline_serializer(
    name="Error",
    fields={
        "error": inline_serializer(
            name="ErrorDetail",
            fields={
                "type": serializers.CharField(),
                "code": serializers.CharField(),
                "message": serializers.CharField(),
                "param": serializers.CharField(allow_null=True),
            },
        )
    },
)


def _r(description: str) -> OpenApiResponse:
    return OpenApiResponse(response=ErrorOut, description=description)


ERROR_UNAVAILABLE = _r("service_unavailable (a service or setting the request needs is missing)")
ERRORS_READ = {
    401: _r("authentication_error"),
    403: _r("permission_error"),
    404: _r("not_found"),
    429: _r("rate_limit_error"),
}
ERRORS_WRITE = {
    400: _r("invalid_request_error or idempotency_error (param names the field)"),
    **ERRORS_READ,
    409: _r("conflict (duplicate, illegal transition, same Idempotency-Key in flight)"),
}
ERRORS_MONEY = {
    **ERRORS_WRITE,
    402: _r("payment_error: insufficient_funds, insufficient_credits or quota_exceeded"),
    502: _r("provider_error"),
}
