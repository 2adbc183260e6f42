"""Real threads against PostgreSQL: SKIP LOCKED claims, not luck or the charge key's
unique index, keep collectors apart."""

import threading
from collections import Counter
from datetime import date

import pytest
from django.db import connection, transaction

from installments import charging, collection, services
from installments.models import Installment, InstallmentCharge, InstallmentEvent, InstallmentOrder
from installments.services import installment_order_create, installments_claim, installments_collect
from installments.tests.test_installments import day
from payments.models import Charge
from payments.tests.factories import CustomerFactory
from wallets.selectors import ledger_audit
from wallets.services import wallet_create, wallet_credit

pytestmark = [pytest.mark.postgres, pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("shards")]


def customer_with_order(merchant, *, per_customer=6, **customer):
    """A customer with a wallet that covers its order of `per_customer` daily installments
    of 100, the first due on 2027-01-01."""
    customer = CustomerFactory(merchant=merchant, **customer)
    wallet_credit(wallet=wallet_create(customer=customer, currency="usd"), amount=10_000)
    installment_order_create(
        merchant=merchant,
        customer=customer,
        amount=100 * per_customer,
        currency="usd",
        installment_count=per_customer,
        interval="day",
        start_date=date(2027, 1, 1),
    )
    return customer


def seed(merchant, *, customers=10, per_customer=6):
    for _ in range(customers):
        customer_with_order(merchant, per_customer=per_customer)


@pytest.fixture
def charge_calls(monkeypatch):
    """Every charge the collectors make, by idempotency key: charge_create calls, and the
    charges the set-based path (charges_from_wallets) made or found."""
    calls: Counter = Counter()
    lock = threading.Lock()
    real, real_many = charging.charge_create, collection.charges_from_wallets

    def counting(**kwargs):
        with lock:
            calls[kwargs["idempotency_key"]] += 1
        return real(**kwargs)

    def counting_many(**kwargs):
        results = real_many(**kwargs)
        with lock:
            calls.update(
                request.idempotency_key for request, charge in zip(kwargs["charges"], results, strict=True) if charge
            )
        return results

    monkeypatch.setattr(charging, "charge_create", counting)
    monkeypatch.setattr(collection, "charges_from_wallets", counting_many)
    return calls


def test_two_collectors_racing_charge_each_installment_once(merchant, charge_calls):
    seed(merchant)
    now = day(date(2027, 2, 1))
    barrier, seen, errors = threading.Barrier(2), [], []

    def collector():
        try:
            with connection.cursor() as cursor:  # a collector never waits for another's rows
                cursor.execute("SET lock_timeout = '5s'")
            barrier.wait()
            for counts in installments_collect(now=now, chunk=5):
                seen.append(counts)
        except Exception as exc:
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=collector) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    assert sum(c.get("paid", 0) for c in seen) == 60 and not any("error" in c for c in seen)
    # Each installment was claimed, and charged, by exactly one collector exactly once:
    # no duplicated work hidden behind the charge key's unique index.
    assert len(charge_calls) == 60 and set(charge_calls.values()) == {1}
    assert set(charge_calls) == set(Installment.objects.values_list("charge_key", flat=True))
    assert Charge.objects.count() == 60 and set(Installment.objects.values_list("status", flat=True)) == {"paid"}
    assert InstallmentCharge.objects.count() == 60
    assert InstallmentEvent.objects.filter(type="installment.processing").count() == 60
    assert not InstallmentEvent.objects.filter(type="installment.reclaimed").exists()
    assert InstallmentOrder.objects.filter(status="completed").count() == 10
    assert ledger_audit()["ok"]


def test_a_collector_skips_rows_another_collector_holds_instead_of_waiting(merchant, charge_calls):
    """One collector is stuck inside its claim transaction holding 5 rows; another runs
    meanwhile, must not wait for them (lock_timeout would fail it) and takes the rest."""
    seed(merchant, customers=2, per_customer=5)
    now = day(date(2027, 2, 1))
    claimed, release, held = threading.Event(), threading.Event(), []

    def stuck_collector():
        try:
            with transaction.atomic():
                held.extend(installments_claim(now=now, chunk=5))
                claimed.set()
                release.wait(30)
                raise RuntimeError("dies: its claim rolls back")
        except RuntimeError:
            pass
        finally:
            claimed.set()
            connection.close()

    thread = threading.Thread(target=stuck_collector)
    thread.start()
    try:
        assert claimed.wait(30) and len(held) == 5
        with connection.cursor() as cursor:
            cursor.execute("SET lock_timeout = '2s'")
        counts = Counter()
        for chunk in installments_collect(now=now, chunk=3):
            counts.update(chunk)
        assert counts == {"paid": 5}
        assert set(charge_calls) == set(
            Installment.objects.exclude(pk__in=[i.pk for i in held]).values_list("charge_key", flat=True)
        )
    finally:
        release.set()
        thread.join()
        with connection.cursor() as cursor:
            cursor.execute("SET lock_timeout = 0")
    assert list(installments_collect(now=now)) == [{"paid": 5}]  # the rolled-back claim is due again
    assert len(charge_calls) == 10 and set(charge_calls.values()) == {1}
    assert ledger_audit()["ok"]


def test_collectors_with_chunks_mixing_merchants_in_opposite_orders_do_not_deadlock(caplog, monkeypatch):
    """Chunks [A, B] and [B, A]: each set-based chunk must take all its ledger locks at
    once, in pk order; locking merchant by merchant, the two would deadlock and fall
    back to one by one."""
    from payments.tests.factories import MerchantFactory

    a, b = MerchantFactory(), MerchantFactory()
    orders = {}
    for merchant, due in ((a, date(2027, 1, 1)), (b, date(2027, 1, 2)), (b, date(2027, 1, 3)), (a, date(2027, 1, 4))):
        customer = CustomerFactory(merchant=merchant)
        wallet_credit(wallet=wallet_create(customer=customer, currency="usd"), amount=1000)
        orders[due] = installment_order_create(
            merchant=merchant,
            customer=customer,
            amount=100,
            currency="usd",
            schedule=[{"due_date": due, "amount": 100}],
        )
    now = day(date(2027, 2, 1))
    chunks = [installments_claim(now=now, chunk=2) for _ in range(2)]
    assert [[r.order.merchant_id for r in chunk] for chunk in chunks] == [[a.pk, b.pk], [b.pk, a.pk]]
    both_inside, real = threading.Barrier(2, timeout=3), collection.charges_from_wallets

    def meet_then_charge(**kwargs):
        try:
            both_inside.wait()  # both chunks hold their first group's locks, if that is how they lock
        except threading.BrokenBarrierError:
            pass  # the other waits for our locks: the order is safe
        return real(**kwargs)

    monkeypatch.setattr(collection, "charges_from_wallets", meet_then_charge)
    paid = []

    def collect(chunk):
        try:
            paid.append(services._collect_from_wallets(chunk, now=now)[1])
        finally:
            connection.close()

    threads = [threading.Thread(target=collect, args=(chunk,)) for chunk in chunks]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert paid == [2, 2], caplog.text  # no chunk fell back to one by one (a deadlock would make it)
    assert "set-based collection failed" not in caplog.text
    assert set(Installment.objects.values_list("status", flat=True)) == {"paid"}
    assert ledger_audit()["ok"]


def test_a_set_based_chunk_locks_its_orders_not_their_merchant(merchant, monkeypatch):
    """Other work of the merchant (webhooks, charges, other orders) must not wait for a
    collector's chunk: locking an order must not lock the merchant row it joins."""
    from django.db import DatabaseError

    from payments.models import Merchant

    seed(merchant, customers=1, per_customer=2)
    inside, release, real = threading.Event(), threading.Event(), collection.charges_from_wallets

    def pause_then_charge(**kwargs):
        inside.set()
        release.wait(10)
        return real(**kwargs)

    monkeypatch.setattr(collection, "charges_from_wallets", pause_then_charge)
    rows = installments_claim(now=day(date(2027, 2, 1)), chunk=10)

    def collect():
        try:
            services._collect_from_wallets(rows, now=day(date(2027, 2, 1)))
        finally:
            connection.close()

    thread = threading.Thread(target=collect)
    thread.start()
    try:
        assert inside.wait(10)
        try:
            with transaction.atomic():
                Merchant.objects.select_for_update(nowait=True).get(pk=merchant.pk)
            merchant_free = True
        except DatabaseError:
            merchant_free = False
    finally:
        release.set()
        thread.join()
    assert merchant_free
    assert set(Installment.objects.values_list("status", flat=True)) == {"paid"}
