"""The set-based collection commits shard by shard of the merchant's balance, so two
collectors of one merchant do not take turns on chunks that reach every shard. On
PostgreSQL, with real threads and eight balance shards."""

import threading
import uuid
from datetime import date

import pytest
from django.db import connection, transaction
from django.test.utils import CaptureQueriesContext

from installments import collection
from installments.models import Installment
from installments.services import installments_claim
from installments.tests.test_installments import day
from installments.tests.test_races import customer_with_order
from wallets import ledger
from wallets.selectors import ledger_audit

pytestmark = [pytest.mark.postgres, pytest.mark.django_db(transaction=True)]
NOW = day(date(2027, 3, 1))


@pytest.fixture(autouse=True)
def eight_shards(settings):
    settings.MERCHANT_BALANCE_SHARDS = 8


def customer_on(merchant, shard: int):
    """A customer whose money lands on balance shard `shard`, with a wallet that covers
    its order of 2 installments, both due by NOW."""
    while (customer_id := uuid.uuid4()).int % 8 != shard:
        pass
    return customer_with_order(merchant, per_customer=2, id=customer_id)


def statuses(customer) -> set:
    return set(Installment.objects.filter(order__customer=customer).values_list("status", flat=True))


def test_a_collector_pays_one_shard_while_another_shard_is_locked(merchant, monkeypatch):
    """While something holds shard 3 of the merchant's balance (another collector, a
    refund), a collector whose chunk reaches shards 3 and 5 pays and commits shard 5's
    installments, then waits for shard 3 only; once it is free, shard 3's are paid too.
    In one transaction for the chunk, nothing would be paid until shard 3 was free."""
    waiting_on_3, free_on_5 = customer_on(merchant, 3), customer_on(merchant, 5)
    rows = installments_claim(now=NOW, chunk=10)
    assert len(rows) == 4
    monkeypatch.setattr(collection, "_first_shard", lambda: 5)  # this collector's round starts on shard 5
    held, release, paid = threading.Event(), threading.Event(), []

    def hold_shard_3():
        try:
            with transaction.atomic():
                ledger.lock([ledger.balance_key(merchant_id=merchant.pk, currency="usd", owner_id=waiting_on_3.pk)])
                held.set()
                release.wait(20)
        finally:
            connection.close()

    def collect():
        try:
            paid.append(collection._collect_from_wallets(rows, now=NOW)[1])
        finally:
            connection.close()

    holder = threading.Thread(target=hold_shard_3)
    holder.start()
    assert held.wait(10)
    collector = threading.Thread(target=collect)
    collector.start()
    try:
        with connection.cursor() as cursor:  # the collector is blocked on a lock, not busy
            for _ in range(200):
                cursor.execute(
                    "SELECT count(*) FROM pg_stat_activity"
                    " WHERE datname = current_database() AND wait_event_type = 'Lock'"
                )
                if cursor.fetchone()[0]:
                    break
                threading.Event().wait(0.05)
            else:
                pytest.fail("the collector never waited for shard 3")
        assert statuses(free_on_5) == {"paid"}  # committed while shard 3 is still held
        assert statuses(waiting_on_3) == {"processing"}
    finally:
        release.set()
        holder.join()
        collector.join()
    assert paid == [4]
    assert statuses(waiting_on_3) == {"paid"}
    assert ledger_audit()["ok"]


def test_each_shard_of_a_chunk_costs_the_same_few_statements_whatever_its_rows(merchant):
    """Set-based, a chunk costs a fixed number of statements for the claim and for each
    balance shard it reaches, none per row: a shard with 6 customers costs what one with
    2 does, and each further shard adds the same."""

    def chunk_statements(customers_by_shard: dict[int, int]) -> int:
        customers = [customer_on(merchant, shard) for shard, n in customers_by_shard.items() for _ in range(n)]
        with CaptureQueriesContext(connection) as statements:
            rows = installments_claim(now=NOW, chunk=100)
            assert collection._collect_from_wallets(rows, now=NOW) == ([], 2 * len(customers))
        assert all(statuses(c) == {"paid"} for c in customers)
        return len(statements)

    one_shard = chunk_statements({3: 2})
    assert chunk_statements({4: 6}) == one_shard
    two_shards = chunk_statements({1: 1, 6: 2})
    three_shards = chunk_statements({0: 2, 2: 1, 7: 3})
    per_shard = two_shards - one_shard
    assert 0 < per_shard <= 18
    assert three_shards - two_shards == per_shard
