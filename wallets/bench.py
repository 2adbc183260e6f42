"""Ledger benchmarks (`manage.py bench <name>`), against DATABASE_URL (PostgreSQL).

- ledger-transfer: transfers/s through transfer_create, spread over 1,000 wallets and on
  one hot wallet, 1 and 8 threads, beside the same transaction in raw SQL (the driver alone); the
  ledger audit must pass afterwards.
- balance-read: wallet_get latency on a wallet with 1,000 and with 1,000,000 entries.
- wallet-debit-http: POST /wallets/{id}/debit over real HTTP (config.bench.HttpBench:
  gunicorn as gunicorn.conf.py configures it, 8 concurrent client connections, API key),
  on one hot wallet and spread over 1,000, each with and without Idempotency-Key, with
  exact balances checked after each run; then pgbench on the same transaction reduced to
  SQL (lock the account, update its balance, insert a ledger row) on scratch tables of
  1 and 1,000 accounts, and Paydesk's rate as a share of pgbench's (`vs_pgbench`).
- wallet-read-http: GET /wallets/{id} over the same harness, every answer checked.

Each run makes its own merchant (`bench-<scenario>-<hex>`) and leaves it behind (the
1,000,000-entry wallet is made once and reused).
"""

import os
import random
import threading
import uuid
from collections import Counter
from time import perf_counter

from django.db import connection, connections, transaction

from config.bench import WARMUP, HttpBench, Timer, check, percentile, pgbench, ratio, scenario
from payments.identity.models import Customer, Merchant
from payments.identity.services import api_key_create, merchant_create
from wallets.models import Account, Entry, Transfer
from wallets.selectors import ledger_audit, ledger_audit_format, wallet_get
from wallets.services import (
    merchant_balance,
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
    """The same transaction as transfer_create in plain SQL on one driver connection per thread."""

    def __init__(self, merchant_id):
        self.merchant_id = str(merchant_id)
        self.local = threading.local()
        self.all = []

    def _conn(self):
        conn = getattr(self.local, "conn", None)
        if conn is None:
            # The driver's own connection, configured as Django's (binding, prepared
            # statements), without Django's cursor wrappers.
            conn = connection.get_new_connection(connection.get_connection_params())
            conn.autocommit = False
            self.local.conn = conn
            self.all.append(conn)
        return conn

    def transfer(self, source_id, dest_id, amount: int) -> None:
        conn = self._conn()
        try:
            with conn.cursor() as cur:
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
            conn.commit()
        except BaseException:
            conn.rollback()
            raise

    def close(self):
        for conn in self.all:
            conn.close()


SERVICE_VS_RAW_TARGET = 0.7  # the goal: the ledger service at 70% of its own SQL's rate


@scenario(
    "ledger-transfer",
    help=(
        "transfer_create vs raw SQL: spread over 1,000 wallets and one hot wallet, 1 and 8 threads, "
        "service/raw ratio each (target 0.7); audit after."
    ),
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
        # The accounts by id, as the raw SQL gets them (transfer_create takes ids as well
        # as Account objects): nothing shared across threads, no model built by the caller.
        transfer_create(
            legs=[(source, -1), (dest, 1)],
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
                results.append(
                    {
                        "scenario": f"ledger-transfer:{shape}:threads={threads}",
                        **figures["service"],
                        "raw_sql_ops_per_s": figures["raw_sql"]["ops_per_s"],
                        "raw_sql_p50_ms": figures["raw_sql"]["p50_ms"],
                        "raw_sql_p99_ms": figures["raw_sql"]["p99_ms"],
                        "service_vs_raw": ratio(figures["service"]["ops_per_s"], figures["raw_sql"]["ops_per_s"]),
                        "service_vs_raw_target": SERVICE_VS_RAW_TARGET,
                        "wallets": len(wallets),
                    }
                )
                out(f"  {shape} x{threads}: service / raw SQL = {results[-1]['service_vs_raw']}")
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


# --- over real HTTP: wallet-debit-http, wallet-read-http --------------------------------

# One statement per execute: with server-side parameters PostgreSQL takes no batch.
PGBENCH_TABLES = (
    "DROP TABLE IF EXISTS bench_pgbench_ledger, bench_pgbench_account",
    "CREATE TABLE bench_pgbench_account (id integer PRIMARY KEY, balance bigint NOT NULL)",
    """CREATE TABLE bench_pgbench_ledger (
        id bigserial PRIMARY KEY,
        account_id integer NOT NULL REFERENCES bench_pgbench_account,
        amount bigint NOT NULL,
        balance_after bigint NOT NULL,
        created_at timestamptz NOT NULL DEFAULT now()
    )""",
    "CREATE INDEX ON bench_pgbench_ledger (account_id)",
)
PGBENCH_SEED = "INSERT INTO bench_pgbench_account SELECT i, %s FROM generate_series(1, %s) i"

# A wallet debit reduced to what the database must do: lock the account row, read its
# balance, write the new one and a ledger row with the balance after, in one transaction.
PGBENCH_DEBIT = """\
\\set aid random(1, {accounts})
BEGIN;
SELECT balance FROM bench_pgbench_account WHERE id = :aid FOR UPDATE \\gset
UPDATE bench_pgbench_account SET balance = :balance - {amount} WHERE id = :aid;
INSERT INTO bench_pgbench_ledger (account_id, amount, balance_after) VALUES (:aid, -{amount}, :balance - {amount});
COMMIT;
"""

PGBENCH_START = 1_000_000_000_000
SPREAD = 1000  # wallets (and pgbench accounts) the spread runs debit


def _pgbench_seconds(n: int) -> int:
    """pgbench's run length: BENCH_PGBENCH_SECONDS, else about as long as n debits take."""
    return int(os.environ.get("BENCH_PGBENCH_SECONDS") or min(5, max(1, n // 200)))


def _pgbench_debits(accounts: int, *, amount: int, seconds: int, out) -> dict:
    """pgbench's rate for a debit on scratch tables of `accounts` rows, checked exact:
    as many ledger rows as transactions, each account down by its rows' sum."""
    with connection.cursor() as cur:
        for statement in PGBENCH_TABLES:
            cur.execute(statement)
        cur.execute(PGBENCH_SEED, [PGBENCH_START, accounts])
    figures = pgbench(PGBENCH_DEBIT.format(accounts=accounts, amount=amount), seconds=seconds)
    with connection.cursor() as cur:
        cur.execute("SELECT count(*), coalesce(sum(amount), 0) FROM bench_pgbench_ledger")
        rows, moved = cur.fetchone()
        cur.execute(
            "SELECT count(*) FROM bench_pgbench_account a LEFT JOIN "
            "(SELECT account_id, sum(amount) AS moved FROM bench_pgbench_ledger GROUP BY account_id) l "
            "ON l.account_id = a.id WHERE a.balance <> %s + coalesce(l.moved, 0)",
            [PGBENCH_START],
        )
        (wrong,) = cur.fetchone()
    check(rows == figures["transactions"], f"pgbench: {rows} ledger rows for {figures['transactions']} transactions")
    check(moved == -amount * rows, f"pgbench: the ledger moved {moved}, not {-amount * rows}")
    check(wrong == 0, f"pgbench: {wrong} accounts whose balance is not their ledger's sum")
    out(f"  pgbench {accounts} account(s): {figures}")
    return figures


def _http_wallets(name: str, count: int, *, funded: int, out) -> tuple[Merchant, dict, list[Account]]:
    """A merchant, its API key's Authorization header and `count` funded wallets."""
    merchant = _merchant(name, out)
    _, raw_key = api_key_create(merchant=merchant, name="bench")
    return merchant, {"Authorization": f"Bearer {raw_key}"}, _wallets(merchant, count, funded=funded, out=out)


def _balances(accounts) -> dict:
    return dict(Account.objects.filter(pk__in=[a.pk for a in accounts]).values_list("pk", "balance"))


@scenario(
    "wallet-debit-http",
    help=(
        "POST /api/v1/wallets/{id}/debit over HTTP (gunicorn -c gunicorn.conf.py, 8 clients), hot and spread, "
        "with and without Idempotency-Key, beside pgbench on the same transaction; exact balances after."
    ),
    n=1000,
)
def wallet_debit_http(*, n: int, out) -> list[dict]:
    _require_postgres()
    amount = 100
    # Enough for both measured runs on the hot wallet, and the warm-up on the last one.
    # One hot wallet, SPREAD others, one for the warm-up.
    merchant, auth, wallets = _http_wallets("wallet-debit-http", SPREAD + 2, funded=(2 * n + WARMUP) * amount, out=out)
    body = {"amount": amount, "currency": CURRENCY, "reference": "bench"}

    def debits(http, customer_ids, keyed: bool) -> list[bytes]:
        return [
            http.request(
                "POST",
                f"/api/v1/wallets/{customer_id}/debit",
                headers={**auth, **({"Idempotency-Key": uuid.uuid4().hex} if keyed else {})},
                body=body,
            )
            for customer_id in customer_ids
        ]

    seconds = _pgbench_seconds(n)
    results = []
    with HttpBench(out) as http:
        http.run(debits(http, [wallets[-1].customer_id] * WARMUP, keyed=True), expect=200)
        for shape in ("hot", "spread"):
            targets = wallets[:1] if shape == "hot" else wallets[1:-1]
            measured = []
            for keyed in (True, False):
                ops = [targets[i % len(targets)] for i in range(n)]
                random.Random(7).shuffle(ops)
                requests = debits(http, [w.customer_id for w in ops], keyed)
                before, merchant_before = _balances(targets), merchant_balance(merchant=merchant, currency=CURRENCY)
                figures, _ = http.run(requests, expect=200)
                # Every request was answered 200 (run checks): each is a debit the client was told happened.
                acknowledged = Counter(w.pk for w in ops)
                after = _balances(targets)
                drops = {pk: before[pk] - after[pk] for pk in before}
                wrong = {pk: drop for pk, drop in drops.items() if drop != acknowledged[pk] * amount}
                label = f"{shape}:{'idempotency-key' if keyed else 'no-key'}"
                check(not wrong, f"{label}: {len(wrong)} wallets dropped other than acknowledged, e.g. {wrong}")
                merchant_gain = merchant_balance(merchant=merchant, currency=CURRENCY) - merchant_before
                check(merchant_gain == n * amount, f"{label}: merchant gained {merchant_gain}, not {n * amount}")
                measured.append(
                    {
                        "scenario": f"wallet-debit-http:{label}",
                        **figures,
                        "wallets": len(targets),
                        "acknowledged": n,
                        "balance_drop": sum(drops.values()),
                        "lost_updates": n * amount - sum(drops.values()),
                    }
                )
                out(f"  {label}: {measured[-1]}")
            # Right after Paydesk's runs of this shape (gunicorn idle meanwhile), so that
            # both see about the same load on a shared machine.
            baseline = _pgbench_debits(len(targets), amount=amount, seconds=seconds, out=out)
            for result in measured:
                result["pgbench_ops_per_s"] = baseline["ops_per_s"]
                result["vs_pgbench"] = ratio(result["ops_per_s"], baseline["ops_per_s"])
            results += [
                *measured,
                {"scenario": f"wallet-debit-http:pgbench:{shape}", **baseline, "accounts": len(targets)},
            ]
    _audit_ok(out)
    return results


@scenario(
    "wallet-read-http",
    help="GET /api/v1/wallets/{id} over HTTP (same harness), over 100 wallets; every answer checked (target 1,000/s).",
    n=2000,
)
def wallet_read_http(*, n: int, out) -> dict:
    _require_postgres()
    target = 1000
    funded = 12_345
    _, auth, wallets = _http_wallets("wallet-read-http", 100, funded=funded, out=out)
    ops = [wallets[i % len(wallets)] for i in range(n)]
    random.Random(7).shuffle(ops)
    with HttpBench(out) as http:

        def reads(targets) -> list[bytes]:
            return [http.request("GET", f"/api/v1/wallets/{w.customer_id}", headers=auth) for w in targets]

        http.run(reads(wallets[:WARMUP]), expect=200)
        figures, bodies = http.run(reads(ops), expect=200, keep_bodies=True)
    for wallet, body in zip(ops, bodies, strict=True):
        check(
            body["customer"] == str(wallet.customer_id) and body["balance"] == funded and body["currency"] == CURRENCY,
            f"GET of {wallet.customer_id}'s wallet answered {body}",
        )
    return {
        **figures,
        "wallets": len(wallets),
        "checked": len(bodies),
        "target_ops_per_s": target,
        "vs_target": ratio(figures["ops_per_s"], target),
    }
