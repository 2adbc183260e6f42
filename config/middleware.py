import logging
import re
import uuid

from django.contrib.messages.middleware import MessageMiddleware
from django.contrib.messages.storage import default_storage
from django.http import JsonResponse
from django.utils.functional import SimpleLazyObject, empty

from config.api.errors import error_body, unavailable_body, unavailable_dependency
from config.api.negotiation import is_staff_session
from config.logging import request_id_var

_SAFE_ID = re.compile(r"^[A-Za-z0-9._\-]{1,64}$")

# Paths that speak JSON only: an API client must never get an HTML error page.
API_PREFIXES = ("/api/", "/webhooks/", "/healthz", "/health")

_STATUS_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found",
    405: "invalid_request_error",
    413: "invalid_request_error",
    429: "rate_limit_error",
    503: "service_unavailable",
}


class RequestIdMiddleware:
    """Give every request an id (the caller's X-Request-Id if sane), log with it, return it."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        incoming = request.headers.get("X-Request-Id", "")
        request.request_id = incoming if _SAFE_ID.match(incoming) else uuid.uuid4().hex
        token = request_id_var.set(request.request_id)
        try:
            response = self.get_response(request)
        finally:
            request_id_var.reset(token)
        response["X-Request-Id"] = request.request_id
        return response


class ApiErrorShapeMiddleware:
    """Last line of defence for API paths: Django's own 404/500 pages (unknown URL,
    malformed id in the URL, errors outside DRF) become API.md's JSON error shape."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        response = self.get_response(request)
        if (
            request.path.startswith(API_PREFIXES)
            and response.status_code >= 400
            and not response.get("Content-Type", "").startswith("application/json")
            and not _is_browsable(request, response)
        ):
            status = response.status_code
            type_ = _STATUS_TYPES.get(status, "api_error")
            message = "No such endpoint or object." if status == 404 else f"Request failed with status {status}."
            if status >= 500:
                message = f"An unexpected error occurred. Request id: {getattr(request, 'request_id', None)}."
            new = JsonResponse(error_body(type_, message), status=status)
            for header in ("Retry-After", "Allow"):
                if header in response:
                    new[header] = response[header]
            return new
        return response

    def process_exception(self, request, exception):
        dependency = unavailable_dependency(exception)
        if request.path.startswith(API_PREFIXES) and dependency:
            response = JsonResponse(unavailable_body(request, dependency), status=503)
            response["Retry-After"] = "1"
            return response
        if request.path.startswith(API_PREFIXES):
            logging.getLogger("paydesk.api").exception("unhandled error outside the API views")
            body = error_body(
                "api_error", f"An unexpected error occurred. Request id: {getattr(request, 'request_id', None)}."
            )
            return JsonResponse(body, status=500)
        return None


def _is_browsable(request, response) -> bool:
    # DRF's browsable API renders its own HTML error pages, for a logged-in staff user only.
    return bool(
        response.get("Content-Type", "").startswith("text/html")
        and getattr(response, "renderer_context", None)
        and is_staff_session(request)
    )


class LazyMessageMiddleware(MessageMiddleware):
    """django.contrib.messages' middleware, its storage built on first use: the admin
    shows messages, an API call never does, and building the storage (a cookie and a
    session backend) cost every API request about 45 µs for nothing. A storage never
    touched has nothing to save, so its response is left as it is."""

    def process_request(self, request):
        request._messages = SimpleLazyObject(lambda: default_storage(request))

    def process_response(self, request, response):
        messages = request.__dict__.get("_messages")
        if isinstance(messages, SimpleLazyObject) and messages._wrapped is empty:
            return response
        return super().process_response(request, response)
