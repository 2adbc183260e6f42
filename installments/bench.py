"""installments-collect: a backlog of due installments across many customers with
funded wallets, collected by 1 and then 2 worker processes."""

import resource
import time
import uuid
from datetime import UTC, date, datetime

from django.db import connection, connections

from config.bench import check, own_peak_rss_mb, run_in_fresh_processes, scenario
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
NOW = datetime(2027, 1, 2, tzinfo=UTC)  # a day after the seeded installments fell due


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
    return merchant, NOW


def collector(now) -> dict:
    """One collector process: collect everything due, then report."""
    started, cpu = time.perf_counter(), _cpu_seconds()
    collected = sum(sum(counts.values()) for counts in installments_collect(now=now))
    return {
        "collected": collected,
        "seconds": time.perf_counter() - started,
        "cpu_seconds": _cpu_seconds() - cpu,
        "peak_rss_mb": own_peak_rss_mb(),
    }


def _cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def size_label(n: int) -> str:
    return f"{n // 1000}k" if n % 1000 == 0 else str(n)


def _collect(n: int, workers: int, out) -> dict:
    # What earlier runs left due at the same time is collected first, unmeasured: the
    # measured collectors must find exactly this run's backlog.
    leftover = sum(sum(c.values()) for c in installments_collect(now=NOW))
    if leftover:
        out(f"installments-collect: {leftover} installments left by earlier runs collected first")
    merchant, now = _seed(n, out)
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:  # fresh statistics, as autovacuum gives a bulk load soon after
            cursor.execute("ANALYZE")
    for conn in connections.all():
        conn.close()
    started = time.perf_counter()
    stats = run_in_fresh_processes("installments.bench.collector", (now,), workers)
    elapsed = time.perf_counter() - started
    paid = Installment.objects.filter(order__merchant=merchant, status="paid").count()
    charges = Charge.objects.filter(merchant=merchant).count()
    left = Account.objects.filter(merchant=merchant, kind="customer_wallet", balance__gt=0).count()
    audit = ledger_audit()
    check(paid == n == charges and left == 0, f"paid {paid}, charges {charges} for {n}; {left} wallets not drained")
    check(sum(s["collected"] for s in stats) == n, "the collectors collected something else too")
    return {
        "scenario": f"installments-collect:{size_label(n)}:{workers}-worker{'s' if workers > 1 else ''}",
        "n": n,
        "ops_per_s": round(n / max(s["seconds"] for s in stats), 1),
        "seconds": round(elapsed, 1),
        "workers": workers,
        "charged_exactly_once": paid == n == charges,
        "worker_peak_rss_mb": [s["peak_rss_mb"] for s in stats],
        # The collectors' own CPU (not PostgreSQL's): what one more worker would need.
        "worker_cpu_s_per_1000": round(sum(s["cpu_seconds"] for s in stats) * 1000 / n, 2),
        "collected_per_worker": [s["collected"] for s in stats],
        "ledger_audit": "ok" if audit["ok"] else "FAILED",
    }


@scenario(
    "installments-collect",
    help="Due installments (10 per customer, wallets funded) collected by 1 then 2 processes at 10k, 50k and "
    "100k (a tenth, half and all of --n); installments/s, each worker's own peak memory, exactly once.",
    n=100_000,
)
def installments_collect_bench(*, n: int, out) -> list[dict]:
    return [_collect(size, workers, out) for size in curve(n) for workers in (1, 2)]


def curve(n: int) -> list[int]:
    """The backlog sizes measured: a tenth, half and all of `n` (10k, 50k and 100k by
    default), whole customers each, so a small --n shows the curve too."""
    whole = [max(PER_CUSTOMER, size // PER_CUSTOMER * PER_CUSTOMER) for size in (n // 10, n // 2, n)]
    return sorted(set(whole))
