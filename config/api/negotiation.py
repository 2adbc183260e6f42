"""Content negotiation: the browsable API is for logged-in staff sessions only.

Everyone else (API keys, end-user tokens, anonymous callers, non-staff sessions) gets
JSON, whatever their Accept header or `?format=api` asks for, so an API client never
receives an HTML page, error pages included (API.md: "never an HTML page").
"""

from django.conf import settings
from django.http import Http404
from rest_framework.exceptions import NotAcceptable
from rest_framework.negotiation import DefaultContentNegotiation
from rest_framework.renderers import BrowsableAPIRenderer


def is_staff_session(request) -> bool:
    """A staff user logged in through the admin (Django's session user, so deciding needs
    no DRF authentication and cannot raise)."""
    django_request = getattr(request, "_request", request)
    if settings.SESSION_COOKIE_NAME not in django_request.COOKIES:
        return False  # no session, no staff user: spares API callers the session machinery
    user = getattr(django_request, "user", None)
    return bool(user is not None and user.is_authenticated and user.is_active and user.is_staff)


class StaffBrowsableContentNegotiation(DefaultContentNegotiation):
    def select_renderer(self, request, renderers, format_suffix=None):
        if is_staff_session(request):
            return super().select_renderer(request, renderers, format_suffix)
        others = [r for r in renderers if not isinstance(r, BrowsableAPIRenderer)]
        if not others:
            return super().select_renderer(request, renderers, format_suffix)
        if len(others) == 1:  # JSON whatever was asked for (below): no Accept parsing needed
            return others[0], others[0].media_type
        try:
            return super().select_renderer(request, others, format_suffix)
        except (Http404, NotAcceptable):
            # Asked for the browsable API (text/html, ?format=api) or something we do not
            # speak: JSON, the API's one language, rather than an HTML page or a 406.
            return others[0], others[0].media_type
