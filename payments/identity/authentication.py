"""DRF authentication: merchant API keys, end-user JWTs, NextAuth session tokens, staff sessions.

Every scheme yields a `Caller`, so views ask one object who is calling and for which
merchant. Failed attempts count against AUTH_FAILURE_THROTTLE_RATE per client address.
"""

import logging
from dataclasses import dataclass
from typing import Any

import jwt
from django.conf import settings
from rest_framework import authentication, exceptions

from config import rows
from config.api.throttling import AuthFailureThrottle
from config.errors import InvalidRequest, NotFound
from config.ids import parse_uuid

from . import nextauth
from .key_cache import api_key_cache
from .models import ApiKey, Customer, Merchant
from .selectors import api_key_get_active, merchant_get_by_ref
from .services import api_key_touch, customer_get_or_create_by_external_id, hash_api_key

logger = logging.getLogger("paydesk.auth")

MERCHANT_HEADER = "X-Paydesk-Merchant"


@dataclass(eq=False)
class Caller:
    merchant: Merchant | None = None
    customer: Customer | None = None
    api_key: ApiKey | None = None
    staff_user: Any = None

    is_authenticated = True
    is_anonymous = False
    is_active = True

    @property
    def is_staff(self) -> bool:
        return self.staff_user is not None

    @property
    def throttle_ident(self) -> str:
        if self.customer is not None and self.api_key is None:
            return f"customer:{self.customer.pk}"
        if self.api_key is not None:
            return f"merchant:{self.merchant.pk}"
        return f"staff:{self.staff_user.pk}"

    pk = throttle_ident

    @property
    def username(self) -> str:
        return str(self)

    def __str__(self) -> str:
        if self.staff_user is not None:
            return f"{self.staff_user.get_username()} (staff{', as ' + self.merchant.name if self.merchant else ''})"
        if self.api_key is not None:
            return f"{self.merchant.name} ({self.api_key.prefix}…)"
        return f"customer {self.customer.pk}"

    def require_merchant(self) -> Merchant:
        """The merchant a write acts for. Staff name one (id or name) with the X-Paydesk-Merchant
        header or ?merchant=."""
        if self.merchant is None:
            raise InvalidRequest(
                f"Staff must say which merchant this is for: send the {MERCHANT_HEADER} header or ?merchant= "
                "(the merchant's id or name).",
                param="merchant",
            )
        return self.merchant


def _bearer(request) -> str | None:
    header = authentication.get_authorization_header(request).decode("latin-1")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer":
        return None
    return token.strip()


class _ThrottledAuthentication(authentication.BaseAuthentication):
    def authenticate_header(self, request):
        return 'Bearer realm="api"'

    def fail(self, request, message: str):
        AuthFailureThrottle().record_failure(request)  # 429 instead, once over the rate
        raise exceptions.AuthenticationFailed(message)


class ApiKeyAuthentication(_ThrottledAuthentication):
    """`Authorization: Bearer pd_test_...` / `pd_live_...`.

    A key that authenticated lately comes from this process's key cache (key_cache: no
    query; a revocation elsewhere is seen within API_KEY_CACHE_SECONDS); any other is
    looked up, and remembered if it is good."""

    def authenticate(self, request):
        token = _bearer(request)
        if token is None or not token.startswith(("pd_test_", "pd_live_")):
            return None
        key_hash = hash_api_key(token)
        api_key = api_key_cache.get(key_hash)
        if api_key is None:
            api_key = api_key_get_active(key_hash=key_hash)
            if api_key is None:
                self.fail(request, "Invalid or revoked API key.")
            if not api_key.merchant.is_active:
                self.fail(request, "This merchant is suspended.")
            api_key_cache.put(api_key)
        if api_key_touch(api_key=api_key):
            api_key_cache.used(api_key)
        return Caller(merchant=api_key.merchant, api_key=api_key), api_key


class CustomerJWTAuthentication(_ThrottledAuthentication):
    """`Authorization: Bearer <JWT>`: HS256 with JWT_SECRET, `sub` = customer id, `exp` required.

    Only HS256 is accepted, so `alg: none` and algorithm-confusion tokens are refused.
    """

    def authenticate(self, request):
        token = _bearer(request)
        if token is None or token.startswith("pd_"):
            return None
        try:
            claims = jwt.decode(
                token,
                settings.JWT_SECRET,
                algorithms=[settings.JWT_ALGORITHM],
                options={"require": ["exp", "sub"]},
            )
        except jwt.ExpiredSignatureError:
            self.fail(request, "The token has expired.")
        except jwt.InvalidTokenError:
            self.fail(request, "Invalid token.")
        try:
            # select_related("merchant").get()'s query as a fixed-shape statement
            # (config/rows.py): every end-user request reads it, and the ORM would
            # compile it on each (under the profiler: 3.0 ms a request before, 1.2 after).
            found = rows.select(Customer, [{"id": parse_uuid(claims["sub"])}], related=("merchant",))
        except NotFound:
            found = []
        if not found:
            self.fail(request, "The token's subject is not a known customer.")
        customer = found[0]
        if not customer.merchant.is_active:  # as for the merchant's own API keys
            self.fail(request, "This merchant is suspended.")
        return Caller(merchant=None, customer=customer), claims


class NextAuthSessionAuthentication(_ThrottledAuthentication):
    """`Authorization: Bearer <NextAuth session token>`: NextAuth v4's or Auth.js v5's own
    encrypted token (payments.identity.nextauth), keyed by NEXTAUTH_SECRET. Its `sub` is
    the external_id of a customer of NEXTAUTH_MERCHANT (the only merchant, when there is
    one), created on first use with the token's email and name.

    Only five-part tokens (compact JWE) are looked at; anything else is left to the
    other schemes, so HS256 JWTs and API keys are unaffected."""

    def authenticate(self, request):
        token = _bearer(request)
        if token is None or not nextauth.looks_like_session_token(token):
            return None
        if not settings.NEXTAUTH_SECRET:
            self.fail(request, "NextAuth session tokens are not accepted here (NEXTAUTH_SECRET is not set).")
        try:
            claims = nextauth.session_token_decode(token, secret=settings.NEXTAUTH_SECRET)
        except nextauth.ExpiredSessionToken:
            self.fail(request, "The token has expired.")
        except nextauth.InvalidSessionToken:
            self.fail(request, "Invalid token.")
        external_id = claims["sub"]
        if len(external_id) > Customer._meta.get_field("external_id").max_length:
            self.fail(request, "The token's subject is too long to be a customer's external_id.")
        merchant = self._merchant(request)
        if not merchant.is_active:
            self.fail(request, "This merchant is suspended.")
        customer, _ = customer_get_or_create_by_external_id(
            merchant=merchant,
            external_id=external_id,
            email=claims.get("email") if isinstance(claims.get("email"), str) else "",
            name=claims.get("name") if isinstance(claims.get("name"), str) else "",
        )
        return Caller(merchant=None, customer=customer), claims

    def _merchant(self, request) -> Merchant:
        """NEXTAUTH_MERCHANT (a name or an id), or the only merchant. Misconfigured (no
        such merchant, or several and none named) is the operator's to fix: logged as an
        error, and the request refused like any token that names no known customer."""
        configured = settings.NEXTAUTH_MERCHANT
        if configured:
            merchants = Merchant.objects.filter(name=configured)
            try:
                merchants = merchants | Merchant.objects.filter(pk=parse_uuid(configured))
            except NotFound:
                pass  # a name, not an id
            found = list(merchants[:2])
            problem = None if len(found) == 1 else f"NEXTAUTH_MERCHANT={configured!r} names no single merchant"
        else:
            found = list(Merchant.objects.order_by("pk")[:2])
            problem = (
                None
                if len(found) == 1
                else "NEXTAUTH_MERCHANT is not set and there is not exactly one merchant: "
                "set it to the merchant whose customers the NextAuth app's users are"
            )
        if problem:
            logger.error("NextAuth session token refused: %s", problem)
            self.fail(request, "NextAuth session tokens cannot be accepted: NEXTAUTH_MERCHANT is not set up.")
        return found[0]


class StaffSessionAuthentication(authentication.SessionAuthentication):
    """A logged-in staff user (admin login) for the browsable API. Acts for all merchants
    when reading; for one merchant when it names it, by id or name (header or ?merchant=)."""

    def authenticate(self, request):
        result = super().authenticate(request)
        if result is None:
            return None
        user, _ = result
        if not user.is_staff:
            return None
        ref = _header_text(request.headers.get(MERCHANT_HEADER)) or request.query_params.get("merchant")
        merchant = merchant_get_by_ref(ref=ref) if ref and ref.strip() else None
        return Caller(merchant=merchant, staff_user=user), None


def _header_text(value: str | None) -> str | None:
    """A header as the UTF-8 text clients send (a merchant's name may not be ASCII): the
    WSGI server hands it over decoded as Latin-1."""
    if value is None:
        return None
    try:
        return value.encode("latin-1").decode("utf-8")
    except UnicodeError:
        return value
