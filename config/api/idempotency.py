"""Idempotency-Key for POST views, with Stripe's semantics (API.md "Idempotency").

    class WalletDebitApi(APIView):
        @idempotent
        def post(self, request, ...): ...

- The key is claimed by inserting a row in its own committed transaction; the unique
  constraint makes exactly one of several concurrent requests the owner. The others
  see the row: in flight -> 409, finished -> the saved response with
  `Idempotent-Replayed: true`, a different request -> 400 idempotency_error.
- The first result is saved once the request got past validation and began executing,
  errors included (a 402 replays as 402). Responses that mean "nothing was attempted"
  (400 validation, 401, 403, 404, 405, 415, 429, 503) release the key instead, so the
  request can be fixed and retried with the same key.
- Keys are kept 24 hours (IDEMPOTENCY_KEY_TTL); a periodic task purges older ones.
- A key left in flight by a process that died mid-request is taken over by a retry once
  it is older than IDEMPOTENCY_IN_FLIGHT_LEASE (default 120 s; keep it above the longest
  request, e.g. gunicorn's timeout).
"""

import hashlib
import json
from functools import wraps

from django.conf import settings
from django.db import IntegrityError, transaction
from django.utils import timezone
from rest_framework.response import Response
from rest_framework.utils.encoders import JSONEncoder

from config.api.errors import IdempotencyError, error_response
from config.models import IdempotencyKey

HEADER = "Idempotency-Key"
NOT_SAVED_STATUSES = frozenset({400, 401, 403, 404, 405, 415, 429, 503})


def _request_hash(request) -> str:
    # A malformed body raises ParseError (or InvalidRequest) here and is answered 400 as it
    # would be without a key; nothing is claimed.
    data = request.data
    try:
        body = json.dumps(data, sort_keys=True, separators=(",", ":"), default=str)
    except (TypeError, ValueError):  # not JSON-shaped (a parser's odd output): its repr will do
        body = repr(data)
    raw = f"{request.method}\n{request.path}\n{body}"
    return hashlib.sha256(raw.encode()).hexdigest()


def _scope(request) -> str:
    user = request.user
    return getattr(user, "throttle_ident", None) or f"anon:{request.META.get('REMOTE_ADDR', '')}"


def _claim(*, scope: str, key: str, request, request_hash: str) -> tuple[IdempotencyKey, bool]:
    """Insert the key as in flight, or return the existing row. Commits on its own.

    An in-flight row older than IDEMPOTENCY_IN_FLIGHT_LEASE belongs to a request whose
    process died (no request runs that long): a retry of the same request takes it over
    (one conditional UPDATE, so one retry wins) and runs again. That is safe because the
    services underneath are atomic and idempotent themselves."""
    now = timezone.now()
    cutoff = now - settings.IDEMPOTENCY_KEY_TTL
    abandoned = now - settings.IDEMPOTENCY_IN_FLIGHT_LEASE
    row = None
    for _ in range(3):
        try:
            with transaction.atomic():
                row = IdempotencyKey.objects.create(
                    scope=scope, key=key, method=request.method, path=request.path[:500], request_hash=request_hash
                )
            return row, True
        except IntegrityError:
            row = IdempotencyKey.objects.filter(scope=scope, key=key).first()
            if row is None:
                continue  # released between our insert and our read: try again
            if row.created_at < cutoff:
                # Expired but not purged yet: a new use of the key starts afresh.
                IdempotencyKey.objects.filter(pk=row.pk, created_at__lt=cutoff).delete()
                continue
            if row.state == IdempotencyKey.State.IN_FLIGHT and row.request_hash == request_hash:
                if row.created_at < abandoned:
                    taken = IdempotencyKey.objects.filter(
                        pk=row.pk, state=IdempotencyKey.State.IN_FLIGHT, created_at=row.created_at
                    ).update(created_at=now)
                    if taken:
                        row.created_at = now
                        return row, True
                    continue  # another retry took it first: look again
            return row, False
    return row, False


def idempotent(view_method):
    @wraps(view_method)
    def wrapper(self, request, *args, **kwargs):
        key = request.headers.get(HEADER)
        if key is None:
            return view_method(self, request, *args, **kwargs)
        if not key or len(key) > 255:
            raise IdempotencyError("Idempotency-Key must be 1 to 255 characters.", param=HEADER)

        request_hash = _request_hash(request)
        row, owner = _claim(scope=_scope(request), key=key, request=request, request_hash=request_hash)
        if not owner:
            if row.request_hash != request_hash:
                raise IdempotencyError(
                    "This Idempotency-Key was already used with a different request body or endpoint.",
                    param=HEADER,
                )
            if row.state == IdempotencyKey.State.IN_FLIGHT:
                return error_response(409, "conflict", "A request with this Idempotency-Key is still in progress.")
            body = None if row.response_body is None else json.loads(row.response_body)
            return Response(body, status=row.response_status, headers={"Idempotent-Replayed": "true"})

        try:
            response = view_method(self, request, *args, **kwargs)
        except Exception as exc:
            response = self.handle_exception(exc)
        # Only while this request still holds the key: if it ran past the lease and a retry
        # took the key over, the retry's result is the one kept.
        mine = IdempotencyKey.objects.filter(pk=row.pk, state=IdempotencyKey.State.IN_FLIGHT, created_at=row.created_at)
        if response.status_code in NOT_SAVED_STATUSES:
            mine.delete()
        else:
            mine.update(
                state=IdempotencyKey.State.DONE,
                response_status=response.status_code,
                # DRF's own encoder, so the replay renders exactly as the first response did.
                response_body=None if response.data is None else json.dumps(response.data, cls=JSONEncoder),
                completed_at=timezone.now(),
            )
        return response

    return wrapper


def idempotency_keys_purge(*, now=None) -> int:
    """Delete keys older than the TTL. Returns how many went."""
    cutoff = (now or timezone.now()) - settings.IDEMPOTENCY_KEY_TTL
    deleted, _ = IdempotencyKey.objects.filter(created_at__lt=cutoff).delete()
    return deleted
