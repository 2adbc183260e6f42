"""Credits benchmarks through the whole stack in-process (django.test.Client: middleware,
JWT authentication, throttling at a raised rate, DRF, the ledger), each checked for an
exact answer afterwards. Each run makes its own merchant and leaves it behind."""

import json
import time
import uuid

import jwt
from django.conf import settings
from django.test import Client, override_settings

from config.bench import WARMUP, Timer, check, scenario
from payments.identity.models import Customer
from payments.identity.services import merchant_create
from webhooks.models import InboundEvent
from webhooks.signing import sign

from .models import Debit, Grant
from .selectors import credit_account_get
from .services import credits_grant

BENCH_SECRET = "whsec_bench_credits"
SPREAD = 1000


def _customers(merchant, count: int) -> list[Customer]:
    Customer.objects.bulk_create(
        [Customer(merchant=merchant, external_id=f"bench-{i}", email=f"bench-{i}@example.com") for i in range(count)]
    )
    return list(Customer.objects.filter(merchant=merchant).order_by("external_id"))


def _token(customer) -> str:
    return jwt.encode(
        {"sub": str(customer.pk), "exp": int(time.time()) + 3600}, settings.JWT_SECRET, algorithm=settings.JWT_ALGORITHM
    )


@scenario(
    "credits-debit",
    help="POST /api/v1/use-credits with end-user JWTs: one hot customer, then spread over 1,000 customers.",
    n=2000,
)
def credits_debit_bench(*, n: int, out) -> list[dict]:
    merchant = merchant_create(name=f"bench-credits-debit-{uuid.uuid4().hex[:12]}")
    out(f"credits-debit: merchant {merchant.name}; funding {SPREAD} customers")
    customers = _customers(merchant, SPREAD)
    per_customer = n // SPREAD + 1
    hot = customers[0]
    credits_grant(customer=hot, units=n + WARMUP, source=Grant.Source.MERCHANT, reason="bench")
    for c in customers:
        credits_grant(customer=c, units=per_customer, source=Grant.Source.MERCHANT, reason="bench")
    tokens = {c.pk: _token(c) for c in customers}
    client = Client()

    def debit(customer):
        return client.post(
            "/api/v1/use-credits",
            json.dumps({"units": 1}),
            content_type="application/json",
            headers={"Authorization": f"Bearer {tokens[customer.pk]}"},
            secure=True,
        )

    results = []
    for _ in range(WARMUP):
        check(debit(hot).status_code == 200, "warmup debit failed")
    timer = Timer()
    for _ in range(n):
        with timer:
            response = debit(hot)
        check(response.status_code == 200, f"hot debit: {response.status_code} {response.content[:200]!r}")
    balance = credit_account_get(customer=hot).balance
    check(balance == per_customer, f"hot customer ends at {balance}, expected {per_customer}")
    check(response.json()["data"]["balance"] == balance, "the API's balance disagrees with the ledger")
    results.append({**timer.result(), "scenario": "credits-debit-hot", "n": n, "balance_exact": True})

    timer = Timer()
    for i in range(n):
        with timer:
            response = debit(customers[i % SPREAD])
        check(response.status_code == 200, f"spread debit: {response.status_code} {response.content[:200]!r}")
    debits = Debit.objects.filter(merchant=merchant).count()
    check(debits == 2 * n + WARMUP, f"{debits} debits recorded for {2 * n + WARMUP} requests")
    # With a small --n some customers get no event at all, hence no credit account.
    total = sum(account.balance for c in customers if (account := credit_account_get(customer=c)) is not None)
    expected = SPREAD * per_customer - n  # every account (hot included) held per_customer before the spread
    check(total == expected, f"balances sum to {total}, expected {expected}")
    results.append({**timer.result(), "scenario": "credits-debit-spread", "n": n, "customers": SPREAD})
    return results


@scenario(
    "credits-grant",
    help="Signed checkout.session.completed events POSTed to /api/v1/webhooks/stripe, 30% duplicates.",
    n=1000,
)
def credits_grant_bench(*, n: int, out) -> dict:
    merchant = merchant_create(name=f"bench-credits-grant-{uuid.uuid4().hex[:12]}")
    customers = _customers(merchant, 100)
    run = uuid.uuid4().hex[:10]
    unique = max(int(n * 0.7), 1)
    ids = [f"evt_bench_credits_{run}_{i}" for i in range(unique)]
    sequence = ids + [ids[(i * 7) % unique] for i in range(n - unique)]
    client = Client()

    def body(event_id: str, customer) -> str:
        return json.dumps(
            {
                "id": event_id,
                "object": "event",
                "type": "checkout.session.completed",
                "api_version": "2026-08-26.dahlia",
                "created": int(time.time()),
                "livemode": False,
                "data": {
                    "object": {
                        "id": f"cs_{event_id}",
                        "object": "checkout.session",
                        "mode": "payment",
                        "status": "complete",
                        "payment_status": "paid",
                        "amount_total": 1000,
                        "currency": "usd",
                        "client_reference_id": str(customer.pk),
                        "metadata": {"paydesk_customer": str(customer.pk), "credits": "10"},
                        "payment_intent": f"pi_{event_id}",
                    }
                },
            }
        )

    def post(event_id: str, customer):
        raw = body(event_id, customer)
        return client.post(
            "/api/v1/webhooks/stripe",
            raw,
            content_type="application/json",
            headers={"Stripe-Signature": sign(raw, BENCH_SECRET)},
            secure=True,
        )

    owner = {event_id: customers[i % len(customers)] for i, event_id in enumerate(ids)}
    with override_settings(STRIPE_WEBHOOK_SECRET=BENCH_SECRET):
        for i in range(WARMUP):
            check(post(f"evt_bench_credits_{run}_warmup_{i}", customers[0]).status_code == 200, "warmup failed")
        timer = Timer()
        for event_id in sequence:
            with timer:
                response = post(event_id, owner[event_id])
            check(response.status_code == 200, f"{response.status_code} {response.content[:200]!r}")
    processed = InboundEvent.objects.filter(event_id__in=ids, status="processed").count()
    grants = Grant.objects.filter(stripe_event_id__in=ids).count()
    check(processed == unique, f"processed {processed} of {unique} unique events")
    check(grants == unique, f"{grants} grants for {unique} unique events")
    # With a small --n some customers get no event at all, hence no credit account.
    total = sum(account.balance for c in customers if (account := credit_account_get(customer=c)) is not None)
    check(total == 10 * (unique + WARMUP), f"balances sum to {total}, expected {10 * (unique + WARMUP)}")
    return {**timer.result(), "unique": unique, "duplicates": n - unique, "grants": grants}
