"""installments-collect: a backlog of due installments across many customers with
funded wallets, collected by 1 and then 2 worker processes."""

import multiprocessing
import resource
import time
import uuid
from datetime import UTC, date, datetime, timedelta

from django.db import connections

from config.bench import check, scenario
from installments.models import Installment, InstallmentOrder
from installments.services import installments_collect
from payments.identity.models import Customer
from payments.identity.services import merchant_create
from payments.models import Charge
from wallets.models import Account
from wallets.selectors import ledger_audit
from wallets.services import merchant_funding_account, transfer_create, wallet_create

PER_CUSTOMER = 10
AMOUNT = 100


def _seed(n: int, out) -> tuple[object, datetime]:
    """n due installments, PER_CUSTOMER per customer, each customer's wallet funded for
    all of them (one multi-leg funding transfer per 500 customers)."""
    merchant = merchant_create(name=f"bench-installments-{uuid.uuid4().hex[:12]}")
    customers = Customer.objects.bulk_create(
        [Customer(merchant=merchant, external_id=f"c-{i}") for i in range(max(n // PER_CUSTOMER, 1))]
    )
    wallets = [wallet_create(customer=c, currency="usd") for c in customers]
    funding = merchant_funding_account(merchant=merchant, currency="usd")
    for start in range(0, len(wallets), 500):
        batch = wallets[start : start + 500]
        each = AMOUNT * PER_CUSTOMER
        transfer_create(
            legs=[(funding, -each * len(batch)), *((w, each) for w in batch)],
            currency="usd",
            merchant=merchant,
            reference="bench funding",
        )
    due = date(2027, 1, 1)
    orders = InstallmentOrder.objects.bulk_create(
        [
            InstallmentOrder(
                merchant=merchant, customer=c, amount=AMOUNT * PER_CUSTOMER, currency="usd", interval="day"
            )
            for c in customers
        ]
    )
    at = datetime(2027, 1, 1, tzinfo=UTC)
    rows = [
        Installment(order=o, sequence=k + 1, due_date=due, amount=AMOUNT, next_attempt_at=at)
        for o in orders
        for k in range(PER_CUSTOMER)
    ]
    for start in range(0, len(rows), 5000):
        Installment.objects.bulk_create(rows[start : start + 5000])
    out(f"installments-collect: seeded {len(rows)} due installments for {len(customers)} customers")
    return merchant, at + timedelta(days=1)


def _worker(now, results) -> None:
    for conn in connections.all():
        conn.close()
    collected = 0
    for counts in installments_collect(now=now):
        collected += sum(counts.values())
    results.put(
        {"collected": collected, "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)}
    )


@scenario(
    "installments-collect",
    help="Due installments (10 per customer, wallets funded) collected by 1 then 2 processes; exactly once.",
    n=10000,
)
def installments_collect_bench(*, n: int, out) -> list[dict]:
    results = []
    for workers in (1, 2):
        merchant, now = _seed(n, out)
        for conn in connections.all():
            conn.close()
        ctx = multiprocessing.get_context("fork")
        queue = ctx.Queue()
        started = time.perf_counter()
        procs = [ctx.Process(target=_worker, args=(now, queue)) for _ in range(workers)]
        for p in procs:
            p.start()
        stats = [queue.get() for _ in procs]
        for p in procs:
            p.join()
        elapsed = time.perf_counter() - started
        paid = Installment.objects.filter(order__merchant=merchant, status="paid").count()
        charges = Charge.objects.filter(merchant=merchant).count()
        drained = Account.objects.filter(merchant=merchant, kind="customer_wallet", balance__gt=0).count()
        audit = ledger_audit()
        check(
            paid == n and charges == n and drained == 0,
            f"paid {paid}, charges {charges} for {n}; {drained} wallets not drained",
        )
        results.append(
            {
                "scenario": f"installments-collect:{workers}-worker{'s' if workers > 1 else ''}",
                "ops_per_s": round(n / elapsed, 1),
                "seconds": round(elapsed, 1),
                "workers": workers,
                "charged_exactly_once": paid == n == charges,
                "worker_peak_rss_mb": [s["peak_rss_mb"] for s in stats],
                "collected_per_worker": [s["collected"] for s in stats],
                "ledger_audit": "ok" if audit["ok"] else "FAILED",
            }
        )
    return results
