"""Cache-backed throttles (Redis cache when REDIS_URL is set, else per-process memory).

- CallerRateThrottle: every API call, per caller (API key's merchant, JWT customer,
  staff user), at API_THROTTLE_RATE.
- AuthFailureThrottle: failed authentications per client address at
  AUTH_FAILURE_THROTTLE_RATE; once over it, a further failure is answered 429 instead
  of 401 until the window passes. Only failures count and only failures are refused: a
  right key or token from the same address (a shared NAT, a job with one stale key next
  to good ones) still gets in. Keys and JWT secrets are far too long to guess, so the
  throttle is there to slow a misbehaving client down, not to lock an address out.
"""

from django.conf import settings
from rest_framework.exceptions import Throttled
from rest_framework.throttling import SimpleRateThrottle


class CallerRateThrottle(SimpleRateThrottle):
    scope = "api"

    def get_rate(self):
        return settings.API_THROTTLE_RATE

    def get_cache_key(self, request, view):
        user = getattr(request, "user", None)
        ident = getattr(user, "throttle_ident", None) or self.get_ident(request)
        return self.cache_format % {"scope": self.scope, "ident": ident}


class AuthFailureThrottle(SimpleRateThrottle):
    scope = "auth_failure"

    def get_rate(self):
        return settings.AUTH_FAILURE_THROTTLE_RATE

    def get_cache_key(self, request, view=None):
        return self.cache_format % {"scope": self.scope, "ident": self.get_ident(request)}

    def record_failure(self, request) -> None:
        """Count a failed authentication from this address; raise Throttled if the
        address is over its rate already (that failure is then not counted, as DRF's
        throttles count only what they let through)."""
        if self.rate is None:
            return
        self.key = self.get_cache_key(request)
        self.history = self.cache.get(self.key, [])
        self.now = self.timer()
        while self.history and self.history[-1] <= self.now - self.duration:
            self.history.pop()
        if len(self.history) >= self.num_requests:
            raise Throttled(wait=self.wait())
        self.history.insert(0, self.now)
        self.cache.set(self.key, self.history, self.duration)
