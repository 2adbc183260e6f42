"""Writes for webhooks: inbound events (store, process) and the outbox (emit, deliver)."""

import json
import logging
import random
import secrets
import socket
import time
import uuid
from datetime import datetime, timedelta
from urllib.parse import urlsplit

import kombu.exceptions
from django.conf import settings
from django.core.serializers.json import DjangoJSONEncoder
from django.db import DatabaseError, IntegrityError, connection, transaction
from django.db.models import F, Q
from django.utils import timezone

from config import rows
from config.errors import Conflict, InvalidRequest, NotFound
from config.ids import parse_uuid
from config.rows import row_source

from . import http, ssrf
from .mirror import stripe_mirror_enqueue
from .models import Delivery, DeliveryAttempt, InboundEvent, OutboundEvent, WebhookEndpoint
from .registry import Ignored, event_types, handlers_for
from .signing import sign

logger = logging.getLogger("paydesk.webhooks")

# --- Inbound ---------------------------------------------------------------------------


def inbound_event_record(
    *, provider: str, event_id: str, type: str, payload: dict, raw_body: str, headers: dict, verified: bool
) -> tuple[InboundEvent, bool]:
    """Store a received event unless it is already stored. Returns (event, created).

    The unique (provider, event_id) constraint decides between concurrent deliveries:
    one statement, INSERT ... ON CONFLICT DO NOTHING, its SQL built once (config/rows.py).
    Outside a transaction (every request runs so) it commits on its own in that one
    round trip; the repeat of an event reads the stored one.
    """
    event = rows.insert(
        InboundEvent(
            provider=provider,
            event_id=event_id,
            type=type,
            payload=payload,
            raw_body=raw_body,
            headers=headers,
            signature_verified=verified,
        ),
        ignore_conflicts=True,
    )
    if event is not None:
        return event, True
    return InboundEvent.objects.get(provider=provider, event_id=event_id), False


class HandlerFailed(Exception):
    """Processing raised; the event is `failed` with the error and may be retried.
    `retry_in`: seconds until it is due again, None once the schedule is used up."""

    def __init__(self, message: str, *, retry_in: float | None = None):
        super().__init__(message)
        self.retry_in = retry_in


# A retry that arrives a little before its time (clocks of two machines) still runs.
_DUE_GRACE = timedelta(seconds=5)


def inbound_retry_delay(attempts: int) -> float | None:
    """Seconds until a failed event is retried after `attempts` attempts (±10% jitter);
    None once WEBHOOK_INBOUND_RETRY_SCHEDULE is used up: staff re-run it from admin."""
    schedule = settings.WEBHOOK_INBOUND_RETRY_SCHEDULE
    if attempts > len(schedule):
        return None
    return schedule[attempts - 1] * random.uniform(0.9, 1.1)


def inbound_event_process(*, event_id, force: bool = False, now: datetime | None = None) -> str:
    """Run the registered handler for a stored event, exactly once.

    Locks the event row (SKIP LOCKED: a concurrent processor of the same event leaves it
    alone), runs the handler in the same transaction, and marks the event processed or
    ignored. A handler exception rolls back the whole transaction, handler's writes
    included; then, in a second one, the event is `failed` with the error and the time
    of its next try (WEBHOOK_INBOUND_RETRY_SCHEDULE) and HandlerFailed is raised. (No
    savepoint around the handler: the path every event takes costs two statements less,
    and only a failure pays for its own transaction.) A failed event is only run again
    once that time has come (so a task retry and the sweep never run it twice in a row),
    and not at all once the schedule is used up. `force` (staff re-run) runs any event
    now; handlers are idempotent. Returns the resulting status ("not-due" when left alone).
    """
    now = now or timezone.now()
    try:
        with transaction.atomic():
            # Another worker processing it holds the row: skip it rather than wait. Its SQL
            # built once (config/rows.py): every event is processed through here.
            found = rows.select(InboundEvent, [{"id": event_id}], for_no_key_update=True, skip_locked=True)
            event = found[0] if found else None
            if event is None:
                return "locked-or-missing"
            if not force:
                if event.status in (InboundEvent.Status.PROCESSED, InboundEvent.Status.IGNORED):
                    return event.status
                if event.status == InboundEvent.Status.FAILED and (
                    event.next_attempt_at is None or event.next_attempt_at > now + _DUE_GRACE
                ):
                    return "not-due"
            attempts = event.attempts
            _handle(event)
            _inbound_event_save(event, attempts=attempts + 1, now=now)
            if event.status in (InboundEvent.Status.PROCESSED, InboundEvent.Status.IGNORED):
                stripe_mirror_enqueue(event)  # after commit; only with a key and a verified Stripe event
    except _HandlerRaised as raised:
        return _inbound_event_failed(event_id, attempts=attempts, error=raised.error, now=now)
    return event.status


class _HandlerRaised(Exception):
    """A handler raised: leave the processing transaction (rolling it back) with the error."""

    def __init__(self, error: str):
        super().__init__(error)
        self.error = error


def _handle(event: InboundEvent) -> None:
    """Run the event's handlers; set its status (processed or ignored) and last_error.
    Raises _HandlerRaised with the error, logged, when one raises."""
    handlers = handlers_for(event.provider, event.type)
    if not handlers:
        event.status = InboundEvent.Status.IGNORED
        event.last_error = f"No handler for {event.provider}:{event.type}."
        return
    try:
        results = [handler(event) for handler in handlers]
    except Exception as exc:  # any handler failure is recorded, never lost
        logger.exception("inbound event handler failed", extra={"event": str(event.pk)})
        raise _HandlerRaised(f"{type(exc).__name__}: {exc}") from exc
    ignored = [r for r in results if isinstance(r, Ignored)]
    if len(ignored) == len(results):
        event.status = InboundEvent.Status.IGNORED
        event.last_error = "; ".join(r.reason for r in ignored)
    else:
        event.status, event.last_error = InboundEvent.Status.PROCESSED, ""


def _inbound_event_failed(event_id, *, attempts: int, error: str, now: datetime) -> str:
    """Record the failed attempt number `attempts + 1` of an event whose handler raised
    (its transaction rolled back), then raise HandlerFailed. The event is locked again;
    if another processor ran it in between (its attempts moved on), what that one
    recorded stands and its status is returned."""
    with transaction.atomic():
        found = rows.select(InboundEvent, [{"id": event_id}], for_no_key_update=True)
        event = found[0] if found else None
        if event is None or event.attempts != attempts:
            return event.status if event is not None else "locked-or-missing"
        retry_in = inbound_retry_delay(attempts + 1)
        event.status, event.last_error = InboundEvent.Status.FAILED, error[:2000]
        event.next_attempt_at = now + timedelta(seconds=retry_in) if retry_in is not None else None
        _inbound_event_save(event, attempts=attempts + 1, now=now)
    raise HandlerFailed(error, retry_in=retry_in)


_PROCESSED_FIELDS = ("status", "last_error", "attempts", "processed_at", "flagged", "flag_reason", "next_attempt_at")


def _inbound_event_save(event: InboundEvent, *, attempts: int, now: datetime) -> None:
    """Write what processing it did to the event (attempt number `attempts`, at `now`)."""
    if event.status != InboundEvent.Status.FAILED:
        event.next_attempt_at = None
    event.attempts, event.processed_at = attempts, now
    # save(update_fields=...)'s UPDATE with its SQL built once (config/rows.py).
    if not rows.update(InboundEvent, {"id": event.pk}, {f: getattr(event, f) for f in _PROCESSED_FIELDS}):
        raise DatabaseError("Save with update_fields did not affect any rows.")


def inbound_event_flag(*, event, reason: str) -> None:
    """Mark an event for staff attention (e.g. an amount mismatch), inside processing."""
    event.flagged = True
    event.flag_reason = "; ".join(filter(None, [event.flag_reason, reason]))[:2000]
    logger.warning("inbound event flagged", extra={"event": str(event.pk), "reason": reason})


def inbound_event_enqueue(event: InboundEvent) -> None:
    """Process after commit, in a task (inline when Celery is eager)."""
    from .tasks import inbound_event_process_task

    transaction.on_commit(lambda: enqueue(inbound_event_process_task, str(event.pk)))


# One quick retry of a publish (a pooled connection the broker dropped), not Celery's
# default three: the row is committed, so a send that fails is only a delay.
_PUBLISH_RETRY_POLICY = {"max_retries": 1, "interval_start": 0, "interval_step": 0.2, "interval_max": 0.2}
# After a send fails for want of a broker, this process sends nothing for this long.
BROKER_PAUSE_SECONDS = 30.0
_broker_paused_until: float | None = None  # monotonic time


def enqueue(task, *args) -> bool:
    """Send `task(*args)` to the workers (run it inline when Celery is eager), best effort.

    For tasks whose work is a committed row the periodic sweep finds too
    (webhooks_sweep_task: due deliveries, stranded inbound events; a Stripe mirror sync
    is best effort and only logged), so it never raises: a send that fails is logged
    and the row waits for the sweep. The broker never fails a request whose outbox row
    committed, nor holds it long: BROKER_SOCKET_TIMEOUT bounds a send, and after one
    failed for want of a broker this process sends nothing for BROKER_PAUSE_SECONDS, so
    a hung broker costs a few seconds once per process, not on every request.
    Returns whether the task was sent.
    """
    global _broker_paused_until
    paused_until = None if task.app.conf.task_always_eager else _broker_paused_until  # eager: no broker
    if paused_until is not None and time.monotonic() < paused_until:
        logger.debug("broker unavailable a moment ago; left for the periodic sweep", extra={"task": task.name})
        return False
    try:
        task.apply_async(args, retry_policy=_PUBLISH_RETRY_POLICY)
    except kombu.exceptions.OperationalError as exc:
        _broker_paused_until = time.monotonic() + BROKER_PAUSE_SECONDS
        logger.warning(
            "broker unavailable: not sending tasks for a while; the periodic sweep will send them",
            extra={"task": task.name, "error": f"{exc}"[:500], "pause_seconds": BROKER_PAUSE_SECONDS},
        )
        return False
    except Exception:
        logger.exception("could not enqueue task; the periodic sweep will retry", extra={"task": task.name})
        return False
    if paused_until is not None:
        _broker_paused_until = None
        logger.info("broker available again", extra={"task": task.name})
    return True


def enqueue_each(task, ids: list[str]) -> None:
    """enqueue(task, id) for each id, in order; stops at the first that is not sent (the
    rest wait for the sweep too, without each paying the broker's timeout)."""
    for id_ in ids:
        if not enqueue(task, id_):
            return


def enqueue_resume() -> None:
    """Forget a broker outage: send again from the next enqueue on (tests)."""
    global _broker_paused_until
    _broker_paused_until = None


# --- Outbound: endpoints --------------------------------------------------------------

ENDPOINT_DELETED = "The endpoint was deleted."


def endpoint_url_check(url: str) -> None:
    """http(s) only, and (unless WEBHOOK_ALLOW_PRIVATE_URLS) only a host whose addresses
    are all public: the SSRF guard, webhooks.ssrf, the same one delivery connects through.
    A name that does not resolve is accepted, as delivery treats it: a failed attempt,
    retried, not a refusal. Raises InvalidRequest(param="url") saying which address."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise InvalidRequest("The URL must be http:// or https:// with a host.", param="url")
    if settings.WEBHOOK_ALLOW_PRIVATE_URLS:
        return
    try:
        ssrf.resolve(parts.hostname, None, allow_private=False)
    except socket.gaierror:
        pass  # not yet, or not now: its deliveries fail and are retried until it does
    except ssrf.RefusedAddress as exc:
        raise InvalidRequest(str(exc), param="url") from exc


def endpoint_create(*, merchant, url: str, events: list[str], description: str = "") -> WebhookEndpoint:
    endpoint_url_check(url)
    known = event_types()
    unknown = [e for e in events if e != "*" and e not in known]
    if not events or unknown:
        raise InvalidRequest(
            f"Unknown event types: {', '.join(unknown)}." if unknown else "Subscribe to at least one event type.",
            param="events",
        )
    return WebhookEndpoint.objects.create(
        merchant=merchant,
        url=url,
        events=sorted(set(events)),
        description=description,
        secret="whsec_" + secrets.token_urlsafe(32),
    )


def endpoint_disable(*, endpoint: WebhookEndpoint, reason: str) -> WebhookEndpoint:
    """Stop sending to the endpoint. Its undelivered deliveries are kept (pending or
    retrying) but are no longer due, and events emitted from now on get `held` ones
    (events_emit); all of them go out if the endpoint is re-enabled. A deleted endpoint
    is left as it is (already disabled, for good)."""
    WebhookEndpoint.objects.filter(pk=endpoint.pk, deleted_at__isnull=True).update(
        enabled=False, disabled_reason=reason
    )
    endpoint.refresh_from_db()
    return endpoint


@transaction.atomic
def endpoint_enable(*, endpoint: WebhookEndpoint) -> WebhookEndpoint:
    """Staff re-enable an endpoint: its failure count starts again from zero (else the next
    failure would disable it at once), its kept deliveries become due, and so do the ones
    held for events emitted while it was disabled (deliveries_release_held); the sweep
    sends each once, oldest first. Deliveries that were delivered before stay delivered.
    Raises Conflict for a deleted endpoint: the merchant deleted it, it stays off."""
    enabled = WebhookEndpoint.objects.filter(pk=endpoint.pk, deleted_at__isnull=True).update(
        enabled=True, disabled_reason="", consecutive_failures=0
    )
    if not enabled:
        raise Conflict("The merchant deleted this endpoint; it cannot be re-enabled.")
    deliveries_release_held(endpoint_id=endpoint.pk)
    endpoint.refresh_from_db()
    return endpoint


@transaction.atomic
def endpoint_delete(*, endpoint: WebhookEndpoint, now: datetime | None = None) -> WebhookEndpoint:
    """Delete the endpoint as Stripe does, for the merchant: from then on the API treats it
    as gone (404, absent from the list). The row stays, with its deliveries and attempts,
    for staff in admin. It is disabled, so it gets no new deliveries and no further
    attempts (as any disabled endpoint, see _due_q), for good: it cannot be re-enabled.
    Its undelivered deliveries (held ones too) are marked failed, except one a worker is
    sending right now, which records its outcome (failed rather than retried, see delivery_record).

    Locks the endpoint row. Raises NotFound if it is already deleted (a concurrent DELETE)."""
    now = now or timezone.now()
    locked = WebhookEndpoint.objects.select_for_update().filter(pk=endpoint.pk, deleted_at__isnull=True).first()
    if locked is None:
        raise NotFound(f"No such webhook endpoint: {endpoint.pk}.")
    locked.enabled, locked.disabled_reason, locked.deleted_at = False, "deleted by the merchant", now
    locked.save(update_fields=["enabled", "disabled_reason", "deleted_at"])
    Delivery.objects.filter(
        Q(claimed_at__isnull=True) | Q(claimed_at__lt=now - _claim_lease()),
        endpoint=locked,
        status__in=[Delivery.Status.PENDING, Delivery.Status.RETRYING, Delivery.Status.HELD],
    ).update(status=Delivery.Status.FAILED, last_error=ENDPOINT_DELETED, claimed_at=None)
    return locked


def endpoint_get(*, merchant, endpoint_id) -> WebhookEndpoint:
    """An endpoint of `merchant` (any merchant's, for staff: None) that is not deleted.
    Operator endpoints (WEBHOOK_URLS) are not in the API. Raises NotFound."""
    qs = WebhookEndpoint.objects.filter(deleted_at__isnull=True, merchant__isnull=False)
    if merchant is not None:
        qs = qs.filter(merchant=merchant)
    endpoint = qs.filter(pk=parse_uuid(endpoint_id, what="webhook endpoint")).first()
    if endpoint is None:
        raise NotFound(f"No such webhook endpoint: {endpoint_id}.")
    return endpoint


# --- Outbound: operator endpoints (WEBHOOK_URLS) ------------------------------------------

NOT_CONFIGURED = "no longer in WEBHOOK_URLS"


def global_endpoints_in_sync(rows: list[WebhookEndpoint], urls: list[str]) -> bool:
    """Whether the operator endpoint rows match WEBHOOK_URLS: a row for every URL, none
    outside it enabled, none in it still disabled for having left it."""
    have = {row.url for row in rows}
    return all(url in have for url in urls) and not any(
        (row.enabled and row.url not in urls) or (row.url in urls and row.disabled_reason == NOT_CONFIGURED)
        for row in rows
    )


def global_endpoints_sync() -> list[WebhookEndpoint]:
    """Make the operator endpoints (no merchant) match WEBHOOK_URLS, and return them: a row
    per URL, events ["*"], created when missing. A URL that left WEBHOOK_URLS is disabled
    (its undelivered deliveries kept, as for any disabled endpoint) and gets no new events;
    it is enabled again if it comes back. One that staff disabled, or that was disabled
    after repeated failures, stays disabled: that is re-enabled in the admin.

    events_emit calls it when the rows it read do not match, in the caller's transaction;
    the sweep calls it every minute. Safe concurrently: two processes creating the same
    URL's row meet on the unique constraint, and the loser uses the winner's row."""
    urls = settings.WEBHOOK_URLS
    with transaction.atomic():
        existing = set(WebhookEndpoint.objects.filter(merchant__isnull=True).values_list("url", flat=True))
        for url in urls:
            if url in existing:
                continue
            try:
                with transaction.atomic():
                    WebhookEndpoint.objects.create(
                        merchant=None, url=url, events=["*"], description="WEBHOOK_URLS", secret=""
                    )
            except IntegrityError:
                pass  # created concurrently
        WebhookEndpoint.objects.filter(merchant__isnull=True, enabled=True).exclude(url__in=urls).update(
            enabled=False, disabled_reason=NOT_CONFIGURED
        )
        WebhookEndpoint.objects.filter(merchant__isnull=True, disabled_reason=NOT_CONFIGURED, url__in=urls).update(
            enabled=True, disabled_reason="", consecutive_failures=0
        )
        return list(WebhookEndpoint.objects.filter(merchant__isnull=True))


def endpoint_signing_secret(endpoint: WebhookEndpoint) -> str:
    """The endpoint's own secret; WEBHOOK_URLS_SECRET for an operator endpoint, read at
    send time, so a rotated secret signs every delivery from then on, retries included."""
    return settings.WEBHOOK_URLS_SECRET if endpoint.is_global else endpoint.secret


# --- Outbound: the outbox -------------------------------------------------------------


def event_emit(*, merchant, type: str, data: dict) -> OutboundEvent:
    """Write an outbound event and one delivery per subscribed endpoint (not deleted), in
    the caller's transaction (the outbox). Rolled back with it: nothing is sent.
    Committed: it is sent, even if the broker is down right now (the sweep finds due
    deliveries). To a disabled endpoint the delivery is `held`: kept, not sent, until the
    endpoint is re-enabled (endpoint_enable). `data` must be JSON-serialisable (ids as
    strings, amounts as ints)."""
    return events_emit(merchant=merchant, events=[(type, data)])[0]


def events_emit(*, merchant, events: list[tuple[str, dict]]) -> list[OutboundEvent]:
    """event_emit for several events of one merchant at once, in order, whatever their
    number: on PostgreSQL one statement inserts the events and a delivery for each
    subscribed endpoint (elsewhere: a read of the endpoints and two INSERTs). The operator
    endpoints of WEBHOOK_URLS come with the same statement, and get every event; when
    they do not match WEBHOOK_URLS (its first use, or a changed value), they are synced
    (global_endpoints_sync) and given their deliveries after it."""
    if not events:
        return []
    now = timezone.now()
    rows = [
        OutboundEvent(
            id=uuid.uuid4(),
            merchant_id=merchant.pk,
            type=type,
            data=json.loads(json.dumps(data, cls=DjangoJSONEncoder)),
            created_at=now + timedelta(microseconds=i),  # in order, as the events API lists them
        )
        for i, (type, data) in enumerate(events)
    ]
    urls = settings.WEBHOOK_URLS
    # No savepoint of its own: it only inserts, in the caller's transaction (or its own).
    with transaction.atomic(savepoint=False):
        if connection.vendor == "postgresql":
            pending, operator = _events_insert_postgres(merchant_id=merchant.pk, rows=rows, urls=urls, now=now)
            if not global_endpoints_in_sync(operator, urls):
                # Rare (first use, or WEBHOOK_URLS changed): the statement used the rows as
                # they were; sync them, then give these events what the synced rows get.
                operator = [e for e in global_endpoints_sync() if e.url in urls]
                _deliveries_create(rows, operator, now)
                Delivery.objects.filter(event__in=rows, status=Delivery.Status.HELD, endpoint__enabled=True).update(
                    status=Delivery.Status.PENDING
                )
                pending = [
                    str(pk)
                    for pk in Delivery.objects.filter(event__in=rows, status=Delivery.Status.PENDING).values_list(
                        "pk", flat=True
                    )
                ]
        else:
            OutboundEvent.objects.bulk_create(rows)
            endpoints = list(
                WebhookEndpoint.objects.filter(
                    Q(merchant_id=merchant.pk) | Q(merchant__isnull=True), deleted_at__isnull=True
                )
            )
            operator = [e for e in endpoints if e.is_global]
            if not global_endpoints_in_sync(operator, urls):
                operator = global_endpoints_sync()
            endpoints = [e for e in endpoints if not e.is_global] + [e for e in operator if e.url in urls]
            pending = _deliveries_create(rows, endpoints, now)
    if pending:
        from .tasks import delivery_attempt_task

        transaction.on_commit(lambda: enqueue_each(delivery_attempt_task, pending))
    return rows


def _deliveries_create(rows: list[OutboundEvent], endpoints: list[WebhookEndpoint], now) -> list[str]:
    """A delivery of each event to each endpoint subscribed to it (held for a disabled
    one; none twice). Returns the ids of the pending ones."""
    deliveries = Delivery.objects.bulk_create(
        [
            Delivery(
                event=row,
                endpoint=endpoint,
                status=Delivery.Status.PENDING if endpoint.enabled else Delivery.Status.HELD,
                next_attempt_at=now,
            )
            for row in rows
            for endpoint in endpoints
            if endpoint.subscribes_to(row.type)
        ],
        ignore_conflicts=True,
    )
    return [str(d.pk) for d in deliveries if d.status == Delivery.Status.PENDING]


def _events_insert_postgres(*, merchant_id, rows, urls, now) -> tuple[list[str], list[WebhookEndpoint]]:
    """The events and their deliveries in one statement (data-modifying CTEs): the
    merchant's endpoints and the operator endpoints of `urls`, as
    WebhookEndpoint.subscribes_to and events_emit choose them. Returns the pending
    deliveries' ids and the operator endpoint rows (for the WEBHOOK_URLS check)."""
    event_table, delivery_table = OutboundEvent._meta.db_table, Delivery._meta.db_table
    endpoint_table = WebhookEndpoint._meta.db_table
    values, params = row_source(
        [(row.id, row.merchant_id, row.type, json.dumps(row.data), row.created_at) for row in rows],
        ("uuid", "uuid", "text", "jsonb", "timestamptz"),
    )
    sql = f"""
        WITH ev AS (
            INSERT INTO {event_table} (id, merchant_id, type, data, created_at) {values}
            RETURNING id, type
        ), ep AS (
            SELECT id, merchant_id, url, enabled, disabled_reason, events FROM {endpoint_table}
            WHERE (merchant_id = %s OR merchant_id IS NULL) AND deleted_at IS NULL
        ), d AS (
            INSERT INTO {delivery_table}
                (id, event_id, endpoint_id, status, attempts, next_attempt_at, last_error, created_at)
            SELECT gen_random_uuid(), ev.id, ep.id, CASE WHEN ep.enabled THEN 'pending' ELSE 'held' END,
                   0, %s, '', %s
            FROM ev JOIN ep ON (ep.events @> '["*"]'::jsonb OR ep.events @> jsonb_build_array(ev.type))
                           AND (ep.merchant_id IS NOT NULL OR ep.url = ANY(%s))
            RETURNING id, status
        )
        SELECT 'd', id, status, NULL, NULL FROM d WHERE status = 'pending'
        UNION ALL
        SELECT 'g', id, url, enabled, disabled_reason FROM ep WHERE merchant_id IS NULL
    """
    params += [merchant_id, now, now, list(urls)]
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        found = cursor.fetchall()
    pending = [str(row[1]) for row in found if row[0] == "d"]
    operator = [
        WebhookEndpoint(id=row[1], merchant_id=None, url=row[2], enabled=row[3], disabled_reason=row[4] or "")
        for row in found
        if row[0] == "g"
    ]
    return pending, operator


def event_body(event: OutboundEvent) -> str:
    """The exact bytes sent (and signed): {"id", "type", "created", "data"}."""
    return json.dumps(
        {"id": str(event.id), "type": event.type, "created": int(event.created_at.timestamp()), "data": event.data},
        separators=(",", ":"),
        sort_keys=True,
    )


def retry_delay(attempts: int) -> float | None:
    """Seconds until the next attempt after `attempts` failed ones, with ±10% jitter;
    None once the schedule is used up (dead letter)."""
    schedule = settings.WEBHOOK_RETRY_SCHEDULE
    if attempts > len(schedule):
        return None
    base = schedule[attempts - 1]
    return base * random.uniform(0.9, 1.1)


def _claim_lease() -> timedelta:
    # A claim older than this belongs to a worker that died mid-delivery: a live one
    # finishes a send within WEBHOOK_DELIVERY_TIMEOUT (a total deadline, webhooks.http).
    return timedelta(seconds=settings.WEBHOOK_DELIVERY_TIMEOUT * 3 + 30)


def _due_q(now: datetime) -> Q:
    """Pending or retrying, its time has come, nobody (alive) holds it, and its endpoint is
    enabled. A disabled endpoint (by staff, or after too many failures) gets no further
    attempts: its deliveries stay pending/retrying (or held, for events emitted since),
    untouched, and go out if staff re-enable it. A deleted endpoint is disabled for good
    (endpoint_delete)."""
    return (
        Q(status__in=[Delivery.Status.PENDING, Delivery.Status.RETRYING], next_attempt_at__lte=now)
        & Q(endpoint__enabled=True, endpoint__deleted_at__isnull=True)
        & (Q(claimed_at__isnull=True) | Q(claimed_at__lt=now - _claim_lease()))
    )


def delivery_claim(*, delivery_id, now: datetime | None = None) -> Delivery | None:
    """Take a due delivery for this worker: locked with SKIP LOCKED, marked claimed and
    its attempt counted, then committed. Another worker finds it claimed and skips it,
    so no attempt is ever sent twice at once. None if not due, claimed or finished."""
    now = now or timezone.now()
    with transaction.atomic():
        delivery = (
            Delivery.objects.select_for_update(skip_locked=True, of=("self",))
            .select_related("event", "endpoint")
            .filter(_due_q(now), pk=delivery_id)
            .first()
        )
        if delivery is None:
            return None
        delivery.claimed_at = now
        delivery.attempts += 1
        delivery.save(update_fields=["claimed_at", "attempts"])
    return delivery


def delivery_send(*, delivery: Delivery) -> tuple[int | None, str, str, int]:
    """POST the event to the endpoint, outside any transaction, within a total deadline
    of WEBHOOK_DELIVERY_TIMEOUT seconds, connecting only to an address the SSRF guard
    checked (webhooks.http); an operator endpoint (WEBHOOK_URLS) may be private. Returns
    (status code or None, truncated response body, error, latency ms)."""
    body = event_body(delivery.event)
    headers = {
        "Content-Type": "application/json",
        "User-Agent": "Paydesk-Webhooks/1.0",
        "Paydesk-Signature": sign(body, endpoint_signing_secret(delivery.endpoint)),
    }
    started = time.perf_counter()
    try:
        # The SSRF guard runs in the connect itself: the address checked is the one used.
        answer = http.post(
            delivery.endpoint.url,
            body=body.encode(),
            headers=headers,
            deadline=settings.WEBHOOK_DELIVERY_TIMEOUT,
            # WEBHOOK_URLS are the operator's own configuration, not a merchant's input: they
            # may be on a private network, or localhost.
            allow_private=settings.WEBHOOK_ALLOW_PRIVATE_URLS or delivery.endpoint.is_global,
        )
        return answer.status, answer.text(1000), "", int((time.perf_counter() - started) * 1000)
    except Exception as exc:  # deadline, refused connection, SSRF refusal: all mean "retry"
        return None, "", f"{type(exc).__name__}: {exc}"[:1000], int((time.perf_counter() - started) * 1000)


@transaction.atomic
def delivery_record(
    *, delivery: Delivery, code: int | None, body: str, error: str, latency_ms: int, now: datetime | None = None
) -> Delivery | None:
    """Record an attempt's outcome: 2xx delivered; otherwise retry on the schedule, or
    `failed` once it is used up or the endpoint was deleted meanwhile. Counts the
    endpoint's consecutive failures and disables it past WEBHOOK_DISABLE_AFTER_FAILURES.

    Applies only if this worker still holds the claim it sent under (same claimed_at and
    attempt number, checked in the UPDATE itself): if the claim was lost (the lease ran
    out and another worker reclaimed it, or it finished meanwhile) the outcome is
    dropped, logged, and None returned, so a late answer never overwrites a newer one."""
    now = now or timezone.now()
    ok = code is not None and 200 <= code < 300
    fields = {
        "last_response_code": code,
        "last_error": "" if ok else (error or f"HTTP {code}"),
        "claimed_at": None,
    }
    if ok:
        fields.update(status=Delivery.Status.DELIVERED, delivered_at=now)
    else:
        deleted = WebhookEndpoint.objects.filter(pk=delivery.endpoint_id, deleted_at__isnull=False).exists()
        delay = None if deleted else retry_delay(delivery.attempts)
        if delay is None:
            fields["status"] = Delivery.Status.FAILED
            if deleted:
                fields["last_error"] = f"{fields['last_error']}; {ENDPOINT_DELETED}"
        else:
            fields.update(status=Delivery.Status.RETRYING, next_attempt_at=now + timedelta(seconds=delay))
    held = Delivery.objects.filter(
        pk=delivery.pk,
        claimed_at=delivery.claimed_at,
        attempts=delivery.attempts,
        status__in=[Delivery.Status.PENDING, Delivery.Status.RETRYING],
    ).update(**fields)
    if not held:
        logger.warning(
            "delivery outcome dropped: the claim was lost before it was recorded",
            extra={"delivery": str(delivery.pk), "attempt": delivery.attempts, "code": code},
        )
        return None
    DeliveryAttempt.objects.create(
        delivery=delivery,
        number=delivery.attempts,
        started_at=delivery.claimed_at or now,
        response_code=code,
        latency_ms=latency_ms,
        response_body=body,
        error=error,
    )
    for name, value in fields.items():
        setattr(delivery, name, value)
    if ok:
        # Only when there is something to reset: every success writing the endpoint row
        # would serialise all workers delivering to one endpoint on that row.
        WebhookEndpoint.objects.filter(pk=delivery.endpoint_id, consecutive_failures__gt=0).update(
            consecutive_failures=0
        )
    else:
        WebhookEndpoint.objects.filter(pk=delivery.endpoint_id).update(
            consecutive_failures=F("consecutive_failures") + 1
        )
        WebhookEndpoint.objects.filter(
            pk=delivery.endpoint_id, enabled=True, consecutive_failures__gte=settings.WEBHOOK_DISABLE_AFTER_FAILURES
        ).update(enabled=False, disabled_reason=f"disabled after {settings.WEBHOOK_DISABLE_AFTER_FAILURES} failures")
    return delivery


def delivery_attempt(*, delivery_id, now: datetime | None = None) -> str | None:
    """Claim, send, record. Safe to call twice or from two workers at once. None when
    there was nothing to send, or the outcome was dropped because the claim was lost."""
    delivery = delivery_claim(delivery_id=delivery_id, now=now)
    if delivery is None:
        return None
    code, body, error, latency_ms = delivery_send(delivery=delivery)
    recorded = delivery_record(delivery=delivery, code=code, body=body, error=error, latency_ms=latency_ms)
    return recorded.status if recorded is not None else None


def delivery_replay(*, delivery: Delivery, now: datetime | None = None) -> Delivery:
    """Staff "replay now": due immediately, whatever its status (a delivered event may be
    sent again; receivers dedupe on the event id). Refused with Conflict while a worker
    is sending it (a claim younger than the lease): clearing that claim would let a
    second worker send it at the same time, and the first one's outcome be dropped. Refused
    with Conflict too if its endpoint was deleted: nothing goes to it any more."""
    now = now or timezone.now()
    if WebhookEndpoint.objects.filter(pk=delivery.endpoint_id, deleted_at__isnull=False).exists():
        raise Conflict("The merchant deleted this delivery's endpoint; nothing is sent to it any more.")
    replayed = (
        Delivery.objects.filter(pk=delivery.pk)
        .filter(Q(claimed_at__isnull=True) | Q(claimed_at__lt=now - _claim_lease()))
        .update(status=Delivery.Status.PENDING, next_attempt_at=now, claimed_at=None)
    )
    if not replayed:
        raise Conflict("This delivery is being sent right now; replay it once that attempt is recorded.")
    from .tasks import delivery_attempt_task

    transaction.on_commit(lambda: enqueue(delivery_attempt_task, str(delivery.pk)))
    delivery.refresh_from_db()
    return delivery


def deliveries_release_held(*, endpoint_id=None) -> int:
    """Make the held deliveries of enabled endpoints (of this one, or of all) pending. They
    keep their next_attempt_at, the time of their event, so they are due at once and the
    sweep sends them oldest first; each is one row (unique per event and endpoint), so
    each event goes out once. endpoint_enable calls it for its endpoint, and the sweep for
    every endpoint: an event whose transaction read its endpoint still disabled but
    committed after the re-enable is held on an enabled endpoint, and is released then.
    Returns how many were released."""
    held = Delivery.objects.filter(
        status=Delivery.Status.HELD, endpoint__enabled=True, endpoint__deleted_at__isnull=True
    )
    if endpoint_id is not None:
        held = held.filter(endpoint_id=endpoint_id)
    return held.update(status=Delivery.Status.PENDING)


def deliveries_due_ids(*, now: datetime | None = None, limit: int = 1000) -> list[str]:
    now = now or timezone.now()
    due = Delivery.objects.filter(_due_q(now)).order_by("next_attempt_at")
    return [str(pk) for pk in due.values_list("pk", flat=True)[:limit]]


def stale_inbound_ids(
    *, older_than: timedelta = timedelta(minutes=2), now: datetime | None = None, limit: int = 1000
) -> list[str]:
    """Inbound events whose processing message may have been lost: still `received` a
    while after arrival, or `failed` with their next try due (those whose retry schedule
    is used up have no next try: they are left to staff)."""
    now = now or timezone.now()
    stranded = Q(status=InboundEvent.Status.RECEIVED, received_at__lt=now - older_than) | Q(
        status=InboundEvent.Status.FAILED, next_attempt_at__lte=now
    )
    return [
        str(pk)
        for pk in InboundEvent.objects.filter(stranded).order_by("received_at").values_list("pk", flat=True)[:limit]
    ]
