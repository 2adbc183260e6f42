"""Ledger benchmarks (`manage.py bench <name>`), against DATABASE_URL (PostgreSQL).

- ledger-transfer: transfers/s through transfer_create, spread over 1,000 wallets and on
  one hot wallet, 1 and 8 threads, beside the same transaction in raw SQL (psycopg2); the
  ledger audit must pass afterwards.
- balance-read: wallet_get latency on a wallet with 1,000 and with 1,000,000 entries.
- wallet-debit-http: POST /wallets/{id}/debit over real HTTP (gunicorn on 127.0.0.1,
  8 concurrent clients, API key, Idempotency-Key), hot and spread, with an exact
  balance check afterwards.

Each run makes its own merchant (`bench-<scenario>-<hex>`) and leaves it behind (the
1,000,000-entry wallet is made once and reused).
"""

import json
import os
import random
import socket
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path
from time import perf_counter

from django.conf import settings
from django.db import connection, connections, transaction

from config.bench import WARMUP, Timer, check, percentile, scenario
from payments.identity.models import Customer, Merchant
from payments.identity.services import api_key_create, merchant_create
from wallets.models import Account, Entry, Transfer
from wallets.selectors import ledger_audit, ledger_audit_format, wallet_get
from wallets.services import (
    merchant_balance_account,
    merchant_funding_account,
    transfer_create,
    wallet_create,
    wallet_credit,
)

CURRENCY = "usd"


def _require_postgres() -> None:
    check(connection.vendor == "postgresql", "ledger benchmarks need PostgreSQL: set DATABASE_URL")


def _merchant(name: str, out) -> Merchant:
    merchant = merchant_create(name=f"bench-{name}-{uuid.uuid4().hex[:12]}")
    out(f"{name}: merchant {merchant.name} ({merchant.pk})")
    return merchant


def _wallets(merchant: Merchant, count: int, *, funded: int, out) -> list[Account]:
    """`count` customers with a usd wallet each, credited `funded` through the ledger.

    In one transaction (the services' own become savepoints): set-up is not what is
    measured, and a commit per wallet would cost a WAL flush each. Nothing else touches
    the new merchant's accounts meanwhile, so holding their locks to the end is harmless.
    """
    started = perf_counter()
    wallets = []
    with transaction.atomic():
        customers = Customer.objects.bulk_create(
            Customer(merchant=merchant, external_id=f"bench-{i}", email=f"bench-{i}@example.com") for i in range(count)
        )
        for customer in customers:
            wallet = wallet_create(customer=customer, currency=CURRENCY)
            if funded:
                wallet_credit(wallet=wallet, amount=funded, reference="bench funding")
            wallets.append(wallet)
    out(f"  {count} wallets funded with {funded} each in {perf_counter() - started:.1f} s")
    return wallets


def _audit_ok(out) -> dict:
    report = ledger_audit()
    if not report["ok"]:
        out(ledger_audit_format(report))
    check(report["ok"], "the ledger audit failed after the run")
    return report


def _run_threads(threads: int, ops: list, work) -> tuple[list[float], float]:
    """Run `work(op)` for every op, split over `threads` threads; per-op latencies and wall time."""
    latencies: list[float] = []
    errors: list[BaseException] = []
    lock = threading.Lock()
    chunks = [ops[i::threads] for i in range(threads)]
    barrier = threading.Barrier(threads + 1)

    def target(chunk):
        mine = []
        try:
            barrier.wait()
            for op in chunk:
                start = perf_counter()
                work(op)
                mine.append(perf_counter() - start)
        except BaseException as exc:  # reported after the run
            errors.append(exc)
        finally:
            connections.close_all()
            with lock:
                latencies.extend(mine)

    pool = [threading.Thread(target=target, args=(chunk,)) for chunk in chunks]
    for t in pool:
        t.start()
    barrier.wait()
    started = perf_counter()
    for t in pool:
        t.join()
    wall = perf_counter() - started
    check(not errors, f"{len(errors)} operations failed, first: {errors[:1]!r}")
    return latencies, wall


def _figures(latencies: list[float], wall: float) -> dict:
    ordered = sorted(latencies)
    return {
        "ops_per_s": round(len(ordered) / wall, 1),
        "p50_ms": round(percentile(ordered, 50) * 1000, 3),
        "p99_ms": round(percentile(ordered, 99) * 1000, 3),
    }


# --- ledger-transfer -------------------------------------------------------------------


RAW_LOCK = (
    "SELECT id, balance, held, allow_negative FROM wallets_account WHERE id IN (%s, %s) ORDER BY id FOR NO KEY UPDATE"
)
RAW_TRANSFER = (
    "INSERT INTO wallets_transfer (id, merchant_id, currency, amount, kind, reference, description, created_at) "
    "VALUES (%s, %s, %s, %s, 'transfer', 'bench-raw', '', now())"
)
RAW_ENTRIES = (
    "INSERT INTO wallets_entry (transfer_id, account_id, amount, balance_after, created_at) "
    "VALUES (%s, %s, %s, %s, now()), (%s, %s, %s, %s, now())"
)
RAW_UPDATE = "UPDATE wallets_account SET balance = %s WHERE id = %s"


class RawLedger:
    """The same transaction as transfer_create in plain SQL on one psycopg2 connection per thread."""

    def __init__(self, merchant_id):
        self.merchant_id = str(merchant_id)
        self.local = threading.local()
        self.all = []

    def _conn(self):
        conn = getattr(self.local, "conn", None)
        if conn is None:
            import psycopg2

            params = connection.get_connection_params()
            conn = psycopg2.connect(**{k: v for k, v in params.items() if k != "cursor_factory"})
            self.local.conn = conn
            self.all.append(conn)
        return conn

    def transfer(self, source_id, dest_id, amount: int) -> None:
        conn = self._conn()
        with conn, conn.cursor() as cur:
            cur.execute(RAW_LOCK, (str(source_id), str(dest_id)))
            rows = {str(row[0]): row for row in cur.fetchall()}
            _, src_balance, src_held, src_overdraft = rows[str(source_id)]
            _, dst_balance, _, _ = rows[str(dest_id)]
            new_src, new_dst = src_balance - amount, dst_balance + amount
            if not src_overdraft and new_src - src_held < 0:
                raise RuntimeError("insufficient funds in the raw baseline")
            transfer_id = str(uuid.uuid4())
            cur.execute(RAW_TRANSFER, (transfer_id, self.merchant_id, CURRENCY, amount))
            cur.execute(
                RAW_ENTRIES,
                (transfer_id, str(source_id), -amount, new_src, transfer_id, str(dest_id), amount, new_dst),
            )
            cur.execute(RAW_UPDATE, (new_src, str(source_id)))
            cur.execute(RAW_UPDATE, (new_dst, str(dest_id)))

    def close(self):
        for conn in self.all:
            conn.close()


@scenario(
    "ledger-transfer",
    help="transfer_create vs raw SQL: spread over 1,000 wallets and one hot wallet, 1 and 8 threads; audit after.",
    n=1000,
)
def ledger_transfer(*, n: int, out) -> list[dict]:
    _require_postgres()
    merchant = _merchant("ledger-transfer", out)
    wallets = _wallets(merchant, 1000, funded=1_000_000, out=out)
    hot = wallets[0]
    by_pk = {w.pk: w for w in wallets}
    rng = random.Random(42)
    raw = RawLedger(merchant.pk)

    def pairs(shape: str, count: int) -> list[tuple]:
        ops = []
        for i in range(count):
            if shape == "hot":
                other = wallets[rng.randrange(1, len(wallets))]
                ops.append((hot.pk, other.pk) if i % 2 else (other.pk, hot.pk))
            else:
                a, b = rng.sample(wallets, 2)
                ops.append((a.pk, b.pk))
        return ops

    def via_service(op):
        source, dest = op
        # Fresh objects per call, as a caller would have: no shared state across threads.
        transfer_create(
            legs=[(Account(pk=source, currency=CURRENCY), -1), (Account(pk=dest, currency=CURRENCY), 1)],
            currency=CURRENCY,
            merchant=merchant,
            reference="bench-service",
        )

    def via_raw(op):
        raw.transfer(op[0], op[1], 1)

    for op in pairs("spread", WARMUP):
        via_service(op)
        via_raw(op)

    results = []
    try:
        for shape in ("spread", "hot"):
            for threads in (1, 8):
                figures = {}
                for impl, work in (("service", via_service), ("raw_sql", via_raw)):
                    before = Transfer.objects.filter(merchant=merchant).count()
                    latencies, wall = _run_threads(threads, pairs(shape, n), work)
                    made = Transfer.objects.filter(merchant=merchant).count() - before
                    check(made == n, f"{shape}/{threads}/{impl}: {made} transfers for {n} operations")
                    figures[impl] = _figures(latencies, wall)
                    out(f"  {shape} x{threads} {impl}: {figures[impl]}")
                ratio = figures["service"]["ops_per_s"] / figures["raw_sql"]["ops_per_s"]
                results.append(
                    {
                        "scenario": f"ledger-transfer:{shape}:threads={threads}",
                        **figures["service"],
                        "raw_sql_ops_per_s": figures["raw_sql"]["ops_per_s"],
                        "raw_sql_p50_ms": figures["raw_sql"]["p50_ms"],
                        "raw_sql_p99_ms": figures["raw_sql"]["p99_ms"],
                        "service_vs_raw": round(ratio, 2),
                        "wallets": len(wallets),
                    }
                )
    finally:
        raw.close()
    report = _audit_ok(out)
    total = sum(Account.objects.filter(pk__in=by_pk).values_list("balance", flat=True))
    check(total == 1_000_000 * len(wallets), f"wallet balances sum to {total}, not {1_000_000 * len(wallets)}")
    for result in results:
        result["audit_ok"] = report["ok"]
        result["audit_entries"] = report["totals"]["entries"]
    return results


# --- balance-read ----------------------------------------------------------------------


def _wallet_with_entries(entries: int, out) -> Account:
    """A wallet with `entries` entries, made with set-based SQL (one balanced transfer of 1
    from a dedicated funding account per entry); reused across runs."""
    name = f"bench-balance-read-{entries}"
    merchant = Merchant.objects.filter(name=name).first()
    if merchant is not None:
        wallet = Account.objects.filter(merchant=merchant, kind=Account.Kind.CUSTOMER_WALLET).first()
        if wallet is not None and wallet.balance == entries:
            out(f"  reusing {name} (balance {wallet.balance})")
            return wallet
        name = f"{name}-{uuid.uuid4().hex[:8]}"
    merchant = merchant_create(name=name)
    customer = Customer.objects.create(merchant=merchant, external_id="bench-reader", email="reader@example.com")
    wallet = wallet_create(customer=customer, currency=CURRENCY)
    funding = merchant_funding_account(merchant=merchant, currency=CURRENCY)
    started = perf_counter()
    seed = uuid.uuid4().hex
    # One transaction: the balance trigger checks each transfer at commit, by then complete.
    with transaction.atomic(), connection.cursor() as cur:
        # Transfers with ids derived from (seed, i), so the entries can point at them.
        cur.execute(
            "INSERT INTO wallets_transfer "
            "(id, merchant_id, currency, amount, kind, reference, description, created_at) "
            "SELECT md5(%s || i)::uuid, %s, %s, 1, 'credit', 'bench-bulk', '', now() FROM generate_series(1, %s) i",
            [seed, merchant.pk, CURRENCY, entries],
        )
        # Wallet entries in order first, so the wallet's newest entry carries balance_after = entries.
        cur.execute(
            "INSERT INTO wallets_entry (transfer_id, account_id, amount, balance_after, created_at) "
            "SELECT md5(%s || i)::uuid, %s, 1, i, now() FROM generate_series(1, %s) i ORDER BY i",
            [seed, wallet.pk, entries],
        )
        cur.execute(
            "INSERT INTO wallets_entry (transfer_id, account_id, amount, balance_after, created_at) "
            "SELECT md5(%s || i)::uuid, %s, -1, -i, now() FROM generate_series(1, %s) i ORDER BY i",
            [seed, funding.pk, entries],
        )
        cur.execute("UPDATE wallets_account SET balance = balance + %s WHERE id = %s", [entries, wallet.pk])
        cur.execute("UPDATE wallets_account SET balance = balance - %s WHERE id = %s", [entries, funding.pk])
        cur.execute("ANALYZE wallets_entry")
    out(f"  {name}: {entries} entries written in {perf_counter() - started:.1f} s")
    wallet.refresh_from_db()
    return wallet


@scenario(
    "balance-read",
    help="wallet_get on wallets with 1,000 and 1,000,000 (BENCH_LARGE_LEDGER) entries: O(1) reads.",
    n=2000,
)
def balance_read(*, n: int, out) -> list[dict]:
    _require_postgres()
    results = []
    # BENCH_LARGE_LEDGER: the large wallet's entries (a smoke run of `bench all` uses fewer).
    for entries in (1_000, int(os.environ.get("BENCH_LARGE_LEDGER", "1000000"))):
        wallet = _wallet_with_entries(entries, out)
        check(Entry.objects.filter(account=wallet).count() == entries, "wrong number of entries on the wallet")
        merchant = Merchant(pk=wallet.merchant_id)

        def read(merchant=merchant, customer_id=wallet.customer_id):
            return wallet_get(merchant=merchant, customer_id=customer_id, currency=CURRENCY)

        for _ in range(WARMUP):
            read()
        timer = Timer()
        for _ in range(n):
            with timer:
                got = read()
        check(got.balance == entries, f"read balance {got.balance}, expected {entries}")
        results.append({"scenario": f"balance-read:entries={entries}", **timer.result(), "balance": got.balance})
    small, large = results
    large["p50_vs_1k_entries"] = round(large["p50_ms"] / small["p50_ms"], 2)
    check(large["p50_vs_1k_entries"] < 3, f"balance reads grew with the ledger: {large['p50_vs_1k_entries']}x")
    _audit_ok(out)
    return results


# --- wallet-debit-http -----------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _start_gunicorn(port: int, workers: int, out) -> subprocess.Popen:
    db = settings.DATABASES["default"]
    database_url = os.environ.get("DATABASE_URL") or (
        f"postgres://{db['USER']}:{db['PASSWORD']}@{db['HOST']}:{db['PORT']}/{db['NAME']}"
    )
    env = {
        **os.environ,
        "DATABASE_URL": database_url,
        "DEBUG": "false",
        "SECRET_KEY": os.environ.get("SECRET_KEY", "bench-only-secret-key-" + uuid.uuid4().hex),
        "JWT_SECRET": os.environ.get("JWT_SECRET", "bench-only-jwt-secret-" + uuid.uuid4().hex),
        "ALLOWED_HOSTS": "127.0.0.1,localhost",
        "SECURE_SSL_REDIRECT": "false",
        "API_THROTTLE_RATE": "100000000/min",
        "LOG_LEVEL": "WARNING",
    }
    base = Path(settings.BASE_DIR)
    gunicorn = Path(sys.executable).with_name("gunicorn")
    cmd = [
        str(gunicorn),
        "config.wsgi:application",
        "--bind",
        f"127.0.0.1:{port}",
        "--workers",
        str(workers),
        "--worker-class",
        "sync",
        "--log-level",
        "warning",
    ]
    out(f"  starting {' '.join(cmd)}")
    proc = subprocess.Popen(cmd, cwd=base, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    import requests

    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"gunicorn exited: {proc.stderr.read().decode()[-2000:]}")
        try:
            if requests.get(f"http://127.0.0.1:{port}/api/v1/payments/ping", timeout=1).status_code == 200:
                return proc
        except requests.RequestException:
            time.sleep(0.3)
    proc.terminate()
    raise RuntimeError("gunicorn did not answer within 60 s")


@scenario(
    "wallet-debit-http",
    help="POST /api/v1/wallets/{id}/debit over HTTP (gunicorn, 8 clients), hot and spread, exact balance check.",
    n=2000,
)
def wallet_debit_http(*, n: int, out) -> list[dict]:
    import requests

    _require_postgres()
    clients = 8
    amount = 100
    workers = int(os.environ.get("BENCH_GUNICORN_WORKERS", "4"))
    merchant = _merchant("wallet-debit-http", out)
    _, raw_key = api_key_create(merchant=merchant, name="bench")
    # Enough for every measured debit on the hot wallet, and the warm-up on the last one.
    wallets = _wallets(merchant, 1000, funded=(n + WARMUP) * amount, out=out)
    merchant_balance = merchant_balance_account(merchant=merchant, currency=CURRENCY)
    port = _free_port()
    proc = _start_gunicorn(port, workers, out)
    base = f"http://127.0.0.1:{port}/api/v1/wallets"
    local = threading.local()

    def session():
        s = getattr(local, "session", None)
        if s is None:
            s = local.session = requests.Session()
            s.headers.update({"Authorization": f"Bearer {raw_key}", "Content-Type": "application/json"})
        return s

    acknowledged: dict = {}
    ack_lock = threading.Lock()

    def debit(customer_id):
        response = session().post(
            f"{base}/{customer_id}/debit",
            data=json.dumps({"amount": amount, "currency": CURRENCY, "reference": "bench"}),
            headers={"Idempotency-Key": uuid.uuid4().hex},
            timeout=30,
        )
        if response.status_code != 200:
            raise RuntimeError(f"debit answered {response.status_code}: {response.text[:300]}")
        with ack_lock:
            acknowledged[customer_id] = acknowledged.get(customer_id, 0) + 1

    results = []
    try:
        for _ in range(WARMUP):
            debit(wallets[-1].customer_id)
        for shape in ("hot", "spread"):
            acknowledged.clear()
            targets = wallets[:1] if shape == "hot" else wallets[1:-1]
            ops = [targets[i % len(targets)].customer_id for i in range(n)]
            random.Random(7).shuffle(ops)
            before = {w.customer_id: Account.objects.get(pk=w.pk).balance for w in targets}
            merchant_before = Account.objects.get(pk=merchant_balance.pk).balance
            latencies, wall = _run_threads(clients, ops, debit)
            drops = {w.customer_id: before[w.customer_id] - Account.objects.get(pk=w.pk).balance for w in targets}
            acked = sum(acknowledged.values())
            check(acked == n, f"{shape}: {acked} of {n} debits acknowledged")
            for customer_id, drop in drops.items():
                expected = acknowledged.get(customer_id, 0) * amount
                check(drop == expected, f"{shape}: wallet of {customer_id} dropped {drop}, acknowledged {expected}")
            merchant_gain = Account.objects.get(pk=merchant_balance.pk).balance - merchant_before
            check(merchant_gain == acked * amount, f"{shape}: merchant gained {merchant_gain}, not {acked * amount}")
            results.append(
                {
                    "scenario": f"wallet-debit-http:{shape}",
                    **_figures(latencies, wall),
                    "clients": clients,
                    "gunicorn_workers": workers,
                    "acknowledged": acked,
                    "balance_drop": sum(drops.values()),
                    "expected_drop": acked * amount,
                    "lost_updates": acked * amount - sum(drops.values()),
                }
            )
            out(f"  {shape}: {results[-1]}")
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    _audit_ok(out)
    return results
