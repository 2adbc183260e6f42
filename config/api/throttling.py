"""Cache-backed throttles (Redis cache when REDIS_URL is set, else per-process memory).

- CallerRateThrottle: every API call, per caller (API key's merchant, JWT customer,
  staff user), at API_THROTTLE_RATE.
- AuthFailureThrottle: failed authentications per client address at
  AUTH_FAILURE_THROTTLE_RATE; once over it, a further failure is answered 429 instead
  of 401 until the window passes. Only failures count and only failures are refused: a
  right key or token from the same address (a shared NAT, a job with one stale key next
  to good ones) still gets in. Keys and JWT secrets are far too long to guess, so the
  throttle is there to slow a misbehaving client down, not to lock an address out.

A cache outage never fails a request: both throttles count in ThrottleCache, which falls
back to this process's memory while the shared cache errors (see there).
"""

import logging
import threading
import time

import redis.exceptions
from django.conf import settings
from django.core.cache import cache as default_cache
from django.core.cache.backends.locmem import LocMemCache
from rest_framework.exceptions import Throttled
from rest_framework.throttling import SimpleRateThrottle

logger = logging.getLogger("paydesk.api")

# Whatever the cache client raises when the cache is unreachable, slow or unwell
# (connection refused or lost, timeout, a replica refusing writes, out of memory): for a
# throttle these all mean "count somewhere else for now", never "fail the request".
CACHE_ERRORS: tuple[type[BaseException], ...] = (redis.exceptions.RedisError, OSError)


class ThrottleCache:
    """The shared cache, or this process's memory while the shared one fails.

    Chosen over failing open: while the cache is down every process still throttles its
    own share of the traffic (a caller gets at most the rate per web process, instead of
    no limit at all), so the auth-failure throttle keeps slowing a key-guessing client
    down during the outage. The counts are not shared between processes meanwhile, and
    start over on each side of the switch; both only loosen the limit for a while.

    After a cache error the shared cache is left alone for `retry_after` seconds: a cache
    that hangs costs one request per process its socket timeout (CACHE_SOCKET_TIMEOUT),
    not every request. One warning when it switches to memory, one line when the shared
    cache answers again: at most one warning per process per `retry_after` seconds.
    """

    def __init__(self, *, retry_after: float = 5.0):
        self.retry_after = retry_after
        self._local = LocMemCache("paydesk-throttle-fallback", {"OPTIONS": {"MAX_ENTRIES": 10_000}})
        self._lock = threading.Lock()
        self._down_until: float | None = None  # monotonic time; None while the shared cache works

    def get(self, key, default=None):
        return self._call("get", key, default)

    def set(self, key, value, timeout):
        return self._call("set", key, value, timeout)

    def clear(self) -> None:
        """Forget the fallback counts and any outage (tests)."""
        self._local.clear()
        self._down_until = None

    def _call(self, method: str, *args):
        down_until = self._down_until
        if down_until is None or time.monotonic() >= down_until:
            try:
                result = getattr(default_cache, method)(*args)
            except CACHE_ERRORS as exc:
                self._shared_failed(exc)
            else:
                if down_until is not None:
                    self._shared_back()
                return result
        return getattr(self._local, method)(*args)

    def _shared_failed(self, exc: BaseException) -> None:
        with self._lock:
            first = self._down_until is None
            self._down_until = time.monotonic() + self.retry_after
        if first:
            logger.warning(
                "cache unavailable: throttling from this process's memory until it answers again",
                extra={"error": f"{type(exc).__name__}: {exc}"[:500], "retry_after": self.retry_after},
            )

    def _shared_back(self) -> None:
        with self._lock:
            was_down, self._down_until = self._down_until is not None, None
        if was_down:
            logger.info("cache available again: throttling from the shared cache")


throttle_cache = ThrottleCache()


class CallerRateThrottle(SimpleRateThrottle):
    scope = "api"
    cache = throttle_cache

    def get_rate(self):
        return settings.API_THROTTLE_RATE

    def get_cache_key(self, request, view):
        user = getattr(request, "user", None)
        ident = getattr(user, "throttle_ident", None) or self.get_ident(request)
        return self.cache_format % {"scope": self.scope, "ident": ident}


class AuthFailureThrottle(SimpleRateThrottle):
    scope = "auth_failure"
    cache = throttle_cache

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
