"""Real threads against PostgreSQL: row locks, not luck, keep the ledger exact."""

import threading
from collections import Counter

import pytest
from django.db import connection

from config.errors import Conflict, InsufficientFunds
from wallets.models import Account, Hold, Transfer
from wallets.selectors import ledger_audit
from wallets.services import (
    hold_capture,
    hold_create,
    hold_void,
    merchant_balance_account,
    transfer_create,
    transfer_reverse,
    wallet_credit,
    wallet_debit,
)
from wallets.tests.factories import WalletFactory

pytestmark = [pytest.mark.postgres, pytest.mark.django_db(transaction=True)]


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
    assert balance(merchant_balance_account(merchant=customer.merchant, currency="usd")) == 2500
    assert ledger_audit()["ok"]


def test_opposite_transfers_between_two_accounts_do_not_deadlock(customer):
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
