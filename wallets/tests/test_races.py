"""Real threads against PostgreSQL: row locks, not luck, keep the ledger exact."""

import threading
import time
import uuid
from collections import Counter

import pytest
from django.db import DatabaseError, connection, transaction
from django.db.models import Q

from config.errors import Conflict, InsufficientFunds
from wallets.models import Account, Hold, Transfer
from wallets.selectors import ledger_audit
from wallets.services import (
    account_get_or_create,
    hold_capture,
    hold_create,
    hold_void,
    merchant_balance,
    merchant_balance_account,
    transfer_create,
    transfer_reverse,
    wallet_credit,
    wallet_debit,
)
from wallets.tests.factories import WalletFactory

pytestmark = [pytest.mark.postgres, pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("shards")]


def run_concurrently(n: int, work) -> Counter:
    """Start `n` threads that call work(i) together; count results by outcome name."""
    barrier = threading.Barrier(n)
    outcomes: Counter = Counter()
    errors: list[str] = []
    lock = threading.Lock()

    def target(i):
        try:
            barrier.wait(timeout=30)
            result = work(i)
            outcome = "ok" if result is None else result
        except Exception as exc:  # counted, and asserted on by the test
            outcome = type(exc).__name__
            if not isinstance(exc, (Conflict, InsufficientFunds)):
                errors.append(f"{outcome}: {exc}")
        finally:
            connection.close()
        with lock:
            outcomes[outcome] += 1

    threads = [threading.Thread(target=target, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not any(t.is_alive() for t in threads), "a thread is stuck (deadlock?)"
    outcomes.errors = errors  # unexpected errors, for the assertion messages
    return outcomes


def balance(account) -> int:
    return Account.objects.get(pk=account.pk).balance


def test_50_concurrent_debits_on_a_wallet_funded_for_25(customer):
    wallet = WalletFactory(customer=customer, balance=25 * 100)

    outcomes = run_concurrently(
        50, lambda i: wallet_debit(wallet=Account.objects.get(pk=wallet.pk), amount=100) and None
    )

    assert outcomes == {"ok": 25, "InsufficientFunds": 25}
    assert balance(wallet) == 0
    assert Transfer.objects.filter(kind="debit").count() == 25
    assert merchant_balance(merchant=customer.merchant, currency="usd") == 2500
    assert ledger_audit()["ok"]


def test_opposite_transfers_between_two_accounts_do_not_deadlock(customer):
    """Half the threads move a→b, half b→a, each locking both accounts. Locking them in leg
    order instead of pk order deadlocks here within a few transfers (PostgreSQL breaks the
    cycle after deadlock_timeout by failing one thread: OperationalError), which this
    catches; that failure was observed every time with the accounts locked one by one in
    leg order. A lock order that is merely "some order" (no ORDER BY: scan order) rarely
    deadlocks two rows, so test_accounts_are_locked_in_pk_order pins the order itself."""
    a = WalletFactory(customer=customer, balance=10_000)
    b = merchant_balance_account(merchant=customer.merchant, currency="usd")
    transfer_create(legs=[(a, -5_000), (b, 5_000)], currency="usd")

    def work(i):
        src, dst = (a, b) if i % 2 else (b, a)
        for _ in range(10):
            transfer_create(
                legs=[(Account.objects.get(pk=src.pk), -7), (Account.objects.get(pk=dst.pk), 7)], currency="usd"
            )

    outcomes = run_concurrently(16, work)

    assert outcomes == {"ok": 16}  # a deadlock would surface as OperationalError in some thread
    assert balance(a) == 5_000 and balance(b) == 5_000  # 8 threads each way, 10 x 7 each
    assert ledger_audit()["ok"]


def test_concurrent_retries_with_one_idempotency_key_move_money_once(customer):
    wallet = WalletFactory(customer=customer, balance=0)

    outcomes = run_concurrently(
        10, lambda i: wallet_credit(wallet=Account.objects.get(pk=wallet.pk), amount=300, idempotency_key="same").pk
    )

    assert len(outcomes) == 1 and sum(outcomes.values()) == 10  # every caller got the same transfer id
    assert balance(wallet) == 300
    assert Transfer.objects.filter(idempotency_key="same").count() == 1


def test_concurrent_capture_and_void_of_one_hold_resolve_it_once(customer):
    wallet = WalletFactory(customer=customer, balance=1_000)
    hold = hold_create(account=wallet, amount=600)

    def work(i):
        h = Hold.objects.get(pk=hold.pk)
        (hold_capture if i % 2 else hold_void)(hold=h)

    outcomes = run_concurrently(10, work)

    assert outcomes == {"ok": 1, "IllegalTransition": 9}
    hold.refresh_from_db()
    wallet.refresh_from_db()
    assert wallet.held == 0
    assert wallet.balance == (400 if hold.status == "captured" else 1_000)
    assert ledger_audit()["ok"]


def test_concurrent_holds_never_reserve_more_than_available(customer):
    wallet = WalletFactory(customer=customer, balance=1_000)

    outcomes = run_concurrently(
        20, lambda i: hold_create(account=Account.objects.get(pk=wallet.pk), amount=100) and None
    )

    assert outcomes == {"ok": 10, "InsufficientFunds": 10}
    wallet.refresh_from_db()
    assert (wallet.balance, wallet.held) == (1_000, 1_000)


def test_concurrent_full_reversals_happen_once(customer):
    wallet = WalletFactory(customer=customer, balance=1_000)
    dest = merchant_balance_account(merchant=customer.merchant, currency="usd")
    original = transfer_create(legs=[(wallet, -400), (dest, 400)], currency="usd")

    def reverse(i):
        transfer_reverse(transfer=original)

    outcomes = run_concurrently(8, reverse)

    assert outcomes == {"ok": 1, "Conflict": 7}
    assert balance(wallet) == 1_000


def test_debits_and_holds_racing_never_overdraw(customer):
    wallet = WalletFactory(customer=customer, balance=1_000)

    def work(i):
        w = Account.objects.get(pk=wallet.pk)
        if i % 3 == 0:
            hold_capture(hold=hold_create(account=w, amount=100))
        elif i % 3 == 1:
            hold_create(account=w, amount=100)
        else:
            wallet_debit(wallet=w, amount=100)

    outcomes = run_concurrently(30, work)

    assert outcomes["ok"] == 10, (outcomes, outcomes.errors[:3])
    assert set(outcomes) <= {"ok", "InsufficientFunds"}
    wallet.refresh_from_db()
    assert wallet.balance - wallet.held == 0
    assert ledger_audit()["ok"]


def test_concurrent_retries_with_one_key_but_different_legs_move_money_once(customer):
    """Same idempotency key, three different transfers, 12 threads at once: one transfer is
    made; the callers that asked for it get it back, the others a Conflict. Variant 2
    shares no account with the others, so it races on the unique key, not on a row lock."""
    merchant = customer.merchant
    wallet = WalletFactory(customer=customer, balance=1_000)
    dest = merchant_balance_account(merchant=merchant, currency="usd")
    other_source = account_get_or_create(kind=Account.Kind.EXTERNAL_FUNDING, merchant=merchant, currency="usd")
    other_dest = account_get_or_create(kind=Account.Kind.RECIPIENT, merchant=merchant, currency="usd", name="r")
    variants = [
        lambda: [(Account.objects.get(pk=wallet.pk), -100), (Account.objects.get(pk=dest.pk), 100)],
        lambda: [(Account.objects.get(pk=wallet.pk), -200), (Account.objects.get(pk=dest.pk), 200)],
        lambda: [(Account.objects.get(pk=other_source.pk), -300), (Account.objects.get(pk=other_dest.pk), 300)],
    ]
    first_balances = {a.pk: balance(a) for a in (wallet, dest, other_source, other_dest)}

    def work(i):
        legs = variants[i % 3]()
        transfer = transfer_create(legs=legs, currency="usd", merchant=merchant, idempotency_key="one-key")
        return f"variant {i % 3}: {transfer.pk}"

    outcomes = run_concurrently(12, work)

    assert not outcomes.errors, outcomes.errors
    made = Transfer.objects.get(merchant=merchant, idempotency_key="one-key")
    winners = [o for o in outcomes if o != "Conflict"]
    assert len(winners) == 1 and winners[0].endswith(str(made.pk))
    assert outcomes == {winners[0]: 4, "Conflict": 8}
    moved = {a.pk: balance(a) - first_balances[a.pk] for a in (wallet, dest, other_source, other_dest)}
    assert sum(abs(delta) for delta in moved.values()) == 2 * made.amount  # one transfer's worth, once
    assert ledger_audit()["ok"]


def _lock_order_probe(customer) -> tuple[list, list]:
    """Start a transfer whose legs list three accounts against their pk order while this
    thread holds the highest-pk account; once the transfer waits for it, report which of
    the two lower-pk accounts it had locked. Locking in pk order, it holds both.

    The accounts are made so that each plausible wrong order differs from pk order in
    what it locks first: inserted M, H, L (a scan without ORDER BY: M first), newest first
    L, H, M (Account's Meta.ordering: L, then waits on H), legs H, M, L."""
    low, mid, high = (uuid.UUID(int=n) for n in (1, 2, 3 << 120))
    funding = {"kind": Account.Kind.EXTERNAL_FUNDING, "currency": "usd", "allow_negative": True}
    for pk in (mid, high, low):  # this insertion order is the point: see above
        Account.objects.create(id=pk, merchant=customer.merchant, name=str(pk), **funding)
    ready = threading.Event()
    result = {}

    def transfer():
        try:
            legs = [(Account.objects.get(pk=pk), amount) for pk, amount in ((high, -2), (mid, 1), (low, 1))]
            ready.set()
            transfer_create(legs=legs, currency="usd")
            result["ok"] = True
        except Exception as exc:  # reported through the assertion below
            result["error"] = repr(exc)
        finally:
            connection.close()

    locked, free = [], []
    with transaction.atomic():
        Account.objects.select_for_update().get(pk=high)
        worker = threading.Thread(target=transfer)
        worker.start()
        assert ready.wait(10)
        _wait_until_a_backend_waits_for_a_lock()
        for pk in (low, mid):
            try:
                with transaction.atomic():
                    Account.objects.select_for_update(nowait=True).get(pk=pk)
                free.append(pk)
            except DatabaseError:
                locked.append(pk)
    worker.join(30)
    assert result == {"ok": True}, result
    return locked, free


def _wait_until_a_backend_waits_for_a_lock(timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND datname = current_database()"
            )
            if cursor.fetchone()[0]:
                return
        time.sleep(0.02)
    raise AssertionError("the transfer never waited for the held account")


def test_accounts_are_locked_in_pk_order(customer):
    locked, free = _lock_order_probe(customer)
    assert free == [] and len(locked) == 2


@pytest.mark.parametrize("variant", ["leg order", "no ORDER BY", "Meta.ordering"])
def test_the_lock_order_probe_catches_wrong_orders(customer, monkeypatch, variant):
    """The test above can fail: with the accounts locked in any other order it sees a
    lower-pk account still free while the transfer waits."""
    from wallets import ledger

    def leg_order(wanted, refs):
        return [Account.objects.select_for_update(no_key=True).get(pk=ref.pk) for ref in refs]

    def unordered(wanted, refs):
        matching = Q()
        for conjunction in wanted:  # config.rows conjunctions, as a Q
            matching |= Q(**{k + ("__in" if isinstance(v, list | tuple) else ""): v for k, v in conjunction.items()})
        rows = Account.objects.select_for_update(no_key=True).filter(matching)
        if variant == "no ORDER BY":
            rows = rows.order_by()
        return list(rows)

    monkeypatch.setattr(ledger, "_lock_rows", leg_order if variant == "leg order" else unordered)
    locked, free = _lock_order_probe(customer)
    assert free
