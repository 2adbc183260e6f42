"""Idempotency-Key for POST views: one policy for every request that creates or moves
money, with Stripe's semantics (API.md "Idempotency") and Stripe's "atomic phases".

    class WalletDebitApi(APIView):
        @idempotent                      # the whole effect is in the database
        def post(self, request, ...): ...

    class PaymentCreateApi(APIView):
        @idempotent(calls_provider=True)  # the request also asks a provider
        def post(self, request):
            payment_create(..., idempotency_key=request.idempotency_key)

The phases of a keyed request:

1. Claim. The key is inserted as in flight, one statement committed on its own; the unique
   constraint makes exactly one of several concurrent requests the owner. The others see
   the row: in flight -> 409, finished -> the saved response with
   `Idempotent-Replayed: true`, a different request -> 400 idempotency_error.
2. Effect and completion, in one transaction. A database-only request runs inside one
   `transaction.atomic()` that also marks the key done with the response's status and
   body, so the money and the record of it commit together or not at all: a crash at any
   point leaves either both or neither, and a retry once the lease has passed runs the
   request again from nothing. The completion only applies while this request still
   owns the key; if a retry took it over, this request's effect rolls back (409).
3. A request that calls a provider cannot hold a transaction across the call. Its service
   records the intent first: the row it creates (payment, charge, refund, installment
   order) carries `request.idempotency_key`, unique per merchant, and the provider is
   called with a key derived from that row (`pay-<id>`, `ch-<id>`, `re-<id>`). A retry at
   any point finds that row and resumes it (calls the provider again with the same
   derived key, records the answer) instead of starting another. The key is marked done
   once the view has answered.

Views never build a key of their own: `request.idempotency_key` (None without the header)
is the caller-scoped key services record (scoped_key). The rows keep it after the API's
record of the key is purged: the same request sent again later finds the first result
(a different one under that key is a 409), never a second charge. A keyed request costs two
statements more than the same request unkeyed: the claim (one INSERT, committed on its own,
no transaction around it) and the completion (one UPDATE; for a database-only request,
inside the effect's transaction). wallets/tests/test_statement_budget.py holds the wallet
debit to that.

- The first result is saved once the request got past validation and began executing,
  errors included (a 402 replays as 402); the error rolled the effect back first.
  Responses that mean "nothing was attempted" (400 validation, 401, 403, 404, 405, 415,
  429, 503) release the key instead, so the request can be fixed and retried.
- Keys are kept 24 hours (IDEMPOTENCY_KEY_TTL); a periodic task purges older ones.
- A key left in flight by a process that died mid-request is taken over by a retry once
  it is older than IDEMPOTENCY_IN_FLIGHT_LEASE (default 120 s; keep it above the longest
  request, e.g. gunicorn's timeout).
- config.faults names the points where the crash tests kill a request.
"""

import hashlib
import json
from functools import wraps

from django.conf import settings
from django.db import IntegrityError, transaction
from django.utils import timezone
from rest_framework.response import Response
from rest_framework.utils.encoders import JSONEncoder

from config import rows
from config.api.errors import IdempotencyError, error_response
from config.faults import fault_point
from config.models import IdempotencyKey

HEADER = "Idempotency-Key"
NOT_SAVED_STATUSES = frozenset({400, 401, 403, 404, 405, 415, 429, 503})


class _TakenOver(Exception):
    """Raised inside the effect's transaction to roll it back: a retry owns the key now."""


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


def scoped_key(*, scope: str, key: str) -> str:
    """The key services record on the rows they create: the client's key scoped to the
    caller as the API's own record is, hashed when too long for their 255-character
    columns. Unique per merchant on those rows and kept with them, so a retry finds them
    even if the API's record of the key is gone."""
    scoped = f"api:{scope}:{key}"
    if len(scoped) > 255:
        scoped = f"api:sha256:{hashlib.sha256(scoped.encode()).hexdigest()}"
    return scoped


def _claim(*, scope: str, key: str, request, request_hash: str) -> tuple[IdempotencyKey, bool]:
    """Insert the key as in flight, or return the existing row. Commits on its own.

    An in-flight row older than IDEMPOTENCY_IN_FLIGHT_LEASE belongs to a request whose
    process died (no request runs that long): a retry of the same request takes it over
    (one conditional UPDATE, so one retry wins) and runs again, which phases 2 and 3 of
    the module docstring make safe."""
    now = timezone.now()
    cutoff = now - settings.IDEMPOTENCY_KEY_TTL
    abandoned = now - settings.IDEMPOTENCY_IN_FLIGHT_LEASE
    row = None
    for _ in range(3):
        try:
            return _insert_in_flight(scope=scope, key=key, request=request, request_hash=request_hash), True
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


def _insert_in_flight(*, scope: str, key: str, request, request_hash: str) -> IdempotencyKey:
    """The claim's INSERT. Outside a transaction, as every request runs (ATOMIC_REQUESTS is
    off), it is one statement that commits as it returns: no BEGIN/COMMIT around it, and a
    duplicate's IntegrityError leaves the connection usable. Inside a caller's transaction
    (a test's, a command's) a savepoint keeps that transaction usable after a duplicate."""
    row = IdempotencyKey(
        scope=scope, key=key, method=request.method, path=request.path[:500], request_hash=request_hash
    )
    if not transaction.get_connection().in_atomic_block:
        return rows.insert(row)
    with transaction.atomic():
        return rows.insert(row)


def _finish(row: IdempotencyKey, response) -> int:
    """Save the response under the key, or release the key for a response that means
    nothing was attempted. Only while this request still owns the key (same claim time):
    if it ran past the lease and a retry took the key over, the retry's result is kept.
    Returns how many rows it changed (0: taken over)."""
    mine = {"id": row.pk, "state": IdempotencyKey.State.IN_FLIGHT, "created_at": row.created_at}
    if response.status_code in NOT_SAVED_STATUSES:
        return IdempotencyKey.objects.filter(**mine).delete()[0]
    done = {
        "state": IdempotencyKey.State.DONE,
        "response_status": response.status_code,
        # DRF's own encoder, so the replay renders exactly as the first response did.
        "response_body": None if response.data is None else json.dumps(response.data, cls=JSONEncoder),
        "completed_at": timezone.now(),
    }
    return rows.update(IdempotencyKey, mine, done)


def _run_atomic(view_method, row, self, request, args, kwargs):
    """Phase 2: the view and the key's completion in one transaction."""
    try:
        with transaction.atomic():
            response = view_method(self, request, *args, **kwargs)
            if response.status_code in NOT_SAVED_STATUSES:
                # Nothing was attempted; undo anything the view did before answering so.
                transaction.set_rollback(True)
            else:
                fault_point("before_done")
                if not _finish(row, response):
                    raise _TakenOver
                return response
    except _TakenOver:
        return error_response(
            409, "conflict", "A retry of this request took its Idempotency-Key over; its result is the one kept."
        )
    except Exception as exc:  # rolled back: record the error (or release the key) on its own
        response = self.handle_exception(exc)
    fault_point("before_done")
    _finish(row, response)
    return response


def _run_resumable(view_method, row, self, request, args, kwargs):
    """Phase 3: the view's services commit their own phases around the provider call."""
    try:
        response = view_method(self, request, *args, **kwargs)
    except Exception as exc:
        response = self.handle_exception(exc)
    fault_point("before_done")
    _finish(row, response)
    return response


def idempotent(view_method=None, *, calls_provider: bool = False):
    """Honour Idempotency-Key on a POST view (see the module docstring for the policy)."""
    if view_method is None:
        return lambda method: idempotent(method, calls_provider=calls_provider)
    run = _run_resumable if calls_provider else _run_atomic

    @wraps(view_method)
    def wrapper(self, request, *args, **kwargs):
        request.idempotency_key = None
        key = request.headers.get(HEADER)
        if key is None:
            return view_method(self, request, *args, **kwargs)
        if not key or len(key) > 255:
            raise IdempotencyError("Idempotency-Key must be 1 to 255 characters.", param=HEADER)

        request_hash = _request_hash(request)
        scope = _scope(request)
        row, owner = _claim(scope=scope, key=key, request=request, request_hash=request_hash)
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

        request.idempotency_key = scoped_key(scope=scope, key=key)
        fault_point("idempotency_claimed")
        response = run(view_method, row, self, request, args, kwargs)
        fault_point("after_commit")
        return response

    return wrapper


def idempotency_keys_purge(*, now=None) -> int:
    """Delete keys older than the TTL. Returns how many went."""
    cutoff = (now or timezone.now()) - settings.IDEMPOTENCY_KEY_TTL
    deleted, _ = IdempotencyKey.objects.filter(created_at__lt=cutoff).delete()
    return deleted
