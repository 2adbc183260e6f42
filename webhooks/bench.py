"""Webhook benchmarks: inbound ingestion through the whole stack, outbound delivery by
several worker processes to a local receiver."""

import json
import multiprocessing
import threading
import time
import uuid
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from unittest import mock

from django.db import connections
from django.test import Client, override_settings

from config.bench import WARMUP, Timer, check, scenario
from payments.identity.services import merchant_create
from webhooks.models import Delivery, InboundEvent
from webhooks.services import deliveries_due_ids, delivery_attempt, endpoint_create, event_emit
from webhooks.signing import sign

BENCH_SECRET = "whsec_bench_secret"


@scenario(
    "webhook-ingest",
    help="Signed Stripe events POSTed to /api/v1/webhooks/stripe (verify, store, dispatch), 20% duplicates.",
    n=2000,
)
def webhook_ingest(*, n: int, out) -> dict:
    run = uuid.uuid4().hex[:10]
    client = Client()
    unique = max(int(n * 0.8), 1)
    ids = [f"evt_bench_{run}_{i}" for i in range(unique)]
    sequence = ids + [ids[i % unique] for i in range(n - unique)]  # the repeats come late, like Stripe's retries

    def body(event_id: str) -> str:
        return json.dumps(
            {
                "id": event_id,
                "object": "event",
                "type": "payment_intent.succeeded",
                "api_version": "2026-08-26.dahlia",
                "created": int(time.time()),
                "livemode": False,
                "data": {
                    "object": {
                        "id": f"pi_{event_id}",
                        "object": "payment_intent",
                        "amount": 1000,
                        "currency": "usd",
                        "status": "succeeded",
                        "metadata": {},
                    }
                },
            }
        )

    with override_settings(STRIPE_WEBHOOK_SECRET=BENCH_SECRET):

        def post(event_id: str):
            raw = body(event_id)
            return client.post(
                "/api/v1/webhooks/stripe",
                raw,
                content_type="application/json",
                headers={"Stripe-Signature": sign(raw, BENCH_SECRET)},
                secure=True,
            )

        for i in range(WARMUP):
            check(post(f"evt_bench_{run}_warmup_{i}").status_code == 200, "warmup failed")
        timer = Timer()
        duplicates_acked = 0
        for event_id in sequence:
            with timer:
                response = post(event_id)
            check(response.status_code == 200, f"{response.status_code} {response.content[:200]!r}")
            duplicates_acked += response.json()["duplicate"]
    stored = InboundEvent.objects.filter(provider="stripe", event_id__in=ids)
    done = stored.filter(status__in=["processed", "ignored"]).count()
    check(stored.count() == unique, f"stored {stored.count()} events for {unique} unique ids")
    check(done == unique, f"processed {done} of {unique} unique events")
    return {
        **timer.result(),
        "unique": unique,
        "duplicates": n - unique,
        "duplicates_acked": duplicates_acked,
        "processed": done,
    }


class _Receiver:
    def __init__(self):
        self.ids: list[str] = []
        self.lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                with receiver.lock:
                    receiver.ids.append(body["id"])
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_port}/hook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


def _worker(endpoint_id: str, results) -> None:
    """One delivery worker process: claim and send due deliveries until none are left
    (the same claim → send → record path the Celery task runs)."""
    for conn in connections.all():
        conn.close()  # never share the parent's database socket
    import resource

    sent = 0
    while True:
        ids = deliveries_due_ids(limit=200)
        if not ids:
            break
        for delivery_id in ids:
            if delivery_attempt(delivery_id=delivery_id) is not None:
                sent += 1
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    results.put({"sent": sent, "peak_rss_mb": round(peak, 1)})


@scenario(
    "outbox-deliver",
    help="Deliveries POSTed to a receiver on 127.0.0.1 by 2 worker processes; at-least-once, none lost.",
    n=10000,
)
def outbox_deliver(*, n: int, out, workers: int = 2) -> dict:
    receiver = _Receiver()
    merchant = merchant_create(name=f"bench-outbox-{uuid.uuid4().hex[:12]}")
    with override_settings(WEBHOOK_ALLOW_PRIVATE_URLS=True):
        endpoint = endpoint_create(merchant=merchant, url=receiver.url, events=["*"])
        with mock.patch("webhooks.tasks.delivery_attempt_task.delay"):  # queued for the workers, not sent inline
            events = [event_emit(merchant=merchant, type="payment.succeeded", data={"i": i}) for i in range(n)]
        out(f"outbox-deliver: {n} deliveries queued for {receiver.url}")
        for conn in connections.all():
            conn.close()
        ctx = multiprocessing.get_context("fork")
        results = ctx.Queue()
        started = time.perf_counter()
        procs = [ctx.Process(target=_worker, args=(str(endpoint.pk), results)) for _ in range(workers)]
        for p in procs:
            p.start()
        stats = [results.get() for _ in procs]
        for p in procs:
            p.join()
        elapsed = time.perf_counter() - started
    expected = {str(e.id) for e in events}
    counts = Counter(receiver.ids)
    receiver.server.shutdown()
    delivered = Delivery.objects.filter(endpoint=endpoint, status="delivered").count()
    lost = len(expected - set(counts))
    check(lost == 0 and delivered == n, f"lost {lost}, delivered {delivered} of {n}")
    return {
        "ops_per_s": round(n / elapsed, 1),
        "workers": workers,
        "delivered": delivered,
        "received": len(receiver.ids),
        "duplicates": sum(c - 1 for c in counts.values()),
        "lost": lost,
        "worker_peak_rss_mb": [s["peak_rss_mb"] for s in stats],
        "sent_per_worker": [s["sent"] for s in stats],
    }
