"""wallets.ledger.post, the one core every movement goes through: set-based whatever the
batch's size, idempotency keys honoured, merchant balances sharded and drawn as a pool."""

import pytest
from django.db import connection, transaction
from django.test.utils import CaptureQueriesContext

from config.errors import Conflict, InsufficientFunds
from payments.tests.factories import CustomerFactory
from wallets.ledger import Key, Pool, Posting, balance_key, post, shard_name
from wallets.models import Account, Entry, Transfer
from wallets.selectors import ledger_audit
from wallets.services import merchant_balance, wallet_debit
from wallets.tests.factories import WalletFactory

pytestmark = pytest.mark.django_db


def _debit(wallet, amount, key=None, **extra) -> Posting:
    shard = balance_key(merchant_id=wallet.merchant_id, currency="usd", owner_id=wallet.customer_id)
    return Posting(
        legs=[(wallet, -amount), (shard, amount)],
        currency="usd",
        kind=Transfer.Kind.DEBIT,
        merchant_id=wallet.merchant_id,
        idempotency_key=key,
        **extra,
    )


@pytest.mark.postgres
@pytest.mark.parametrize("size", [1, 50])
def test_a_batch_costs_two_statements_whatever_its_size(merchant, size, shards):
    wallets = [WalletFactory(customer=CustomerFactory(merchant=merchant), balance=100) for _ in range(size)]
    with transaction.atomic(), CaptureQueriesContext(connection) as queries:
        results = post([_debit(w, 10, key=f"k{i}") for i, w in enumerate(wallets)])
    assert len(queries.captured_queries) == 2, [q["sql"][:120] for q in queries.captured_queries]
    assert all(r.created for r in results)
    assert merchant_balance(merchant=merchant, currency="usd") == 10 * size
    assert ledger_audit()["ok"]


def test_a_replayed_key_in_a_batch_moves_nothing_and_the_others_post(merchant):
    a = WalletFactory(customer=CustomerFactory(merchant=merchant), balance=100)
    b = WalletFactory(customer=CustomerFactory(merchant=merchant), balance=100)
    with transaction.atomic():
        [first] = post([_debit(a, 30, key="once")])
    with transaction.atomic():
        again, other = post([_debit(a, 30, key="once"), _debit(b, 20, key="other")])
    assert (again.created, again.transfer.pk) == (False, first.transfer.pk)
    assert other.created
    a.refresh_from_db()
    b.refresh_from_db()
    assert (a.balance, b.balance) == (70, 80)
    with pytest.raises(Conflict), transaction.atomic():
        post([_debit(a, 31, key="once")])


def test_if_covered_skips_a_short_posting_and_what_needs_it(merchant):
    wallet = WalletFactory(customer=CustomerFactory(merchant=merchant), balance=50)
    debit = _debit(wallet, 60, if_covered=True)
    shard = balance_key(merchant_id=merchant.pk, currency="usd", owner_id=wallet.customer_id)
    recipient = Key(Account.Kind.RECIPIENT, merchant.pk, "usd", name="acct_x")
    paid_on = Posting(legs=[(shard, -5), (recipient, 5)], currency="usd", merchant_id=merchant.pk, needs=debit)
    with transaction.atomic():
        assert post([debit, paid_on]) == [None, None]
    with pytest.raises(InsufficientFunds), transaction.atomic():
        post([_debit(wallet, 60)])
    assert Entry.objects.filter(account=wallet).count() == 1  # the funding only


@pytest.mark.parametrize("shards", [8], indirect=True)
def test_a_pool_debit_draws_on_every_shard_the_preferred_first(merchant, shards):
    customers = [CustomerFactory(merchant=merchant) for _ in range(40)]
    names = {shard_name(c.pk) for c in customers}
    assert len(names) > 1  # the customers' money lands on several shards
    for customer in customers:
        wallet_debit(wallet=WalletFactory(customer=customer, balance=10), amount=10)
    assert merchant_balance(merchant=merchant, currency="usd") == 400
    funding = Key(Account.Kind.EXTERNAL_FUNDING, merchant.pk, "usd")
    prefer = shard_name(customers[0].pk)
    with transaction.atomic():
        [paid] = post([Posting(legs=[(Pool(merchant.pk, "usd", prefer=prefer), -395), (funding, 395)], currency="usd")])
    drawn = {paid.accounts[pk].name: -amount for pk, amount in paid.legs if amount < 0}
    assert sum(drawn.values()) == 395 and len(drawn) == len(names)
    assert drawn[prefer] == sum(1 for c in customers if shard_name(c.pk) == prefer) * 10  # emptied first
    assert merchant_balance(merchant=merchant, currency="usd") == 5
    with pytest.raises(InsufficientFunds), transaction.atomic():
        post([Posting(legs=[(Pool(merchant.pk, "usd"), -6), (funding, 6)], currency="usd")])
    assert ledger_audit()["ok"]


@pytest.mark.postgres
def test_a_batch_of_thousands_of_keyed_postings_is_still_one_write(merchant, shards):
    """Beyond a few rows the write's rows travel as one JSON parameter per table, so no
    batch is too large for PostgreSQL's 65,535 parameters (as a VALUES list, 3,000 keyed
    debits were about 69,000 of them)."""
    wallet = WalletFactory(customer=CustomerFactory(merchant=merchant), balance=10_000)
    with transaction.atomic(), CaptureQueriesContext(connection) as queries:
        results = post([_debit(wallet, 1, key=f"k-{i}") for i in range(3000)])
    assert len(queries.captured_queries) == 2
    assert all(r.created for r in results)
    wallet.refresh_from_db()
    assert wallet.balance == 7_000
    assert ledger_audit()["ok"]


@pytest.mark.postgres
def test_the_replay_check_looks_each_key_up_whatever_the_statistics_say(merchant):
    """Every read of wallets_transfer in the replay check is by the batch's keys (an
    index probe per key). Left to choose, with statistics taken while the table was
    small (autovacuum lags behind growth), the planner read every keyed transfer there
    is and matched them against the keys afterwards, for every write: 1.9 ms of a keyed
    debit's 8 once a bench had made a few thousand."""
    wallet = WalletFactory(customer=CustomerFactory(merchant=merchant), balance=10_000)
    with transaction.atomic():
        post([_debit(wallet, 1, key=f"earlier-{i}") for i in range(300)])
    with transaction.atomic(), CaptureQueriesContext(connection) as queries:
        post([_debit(wallet, 1, key="new")])
    [write] = [q["sql"] for q in queries.captured_queries if "INSERT INTO" in q["sql"]]
    with connection.cursor() as cursor:
        cursor.execute("EXPLAIN (FORMAT JSON) " + write)
        [plan] = cursor.fetchone()[0]
    reads = [
        n
        for n in _nodes(plan["Plan"])
        if n.get("Relation Name") == "wallets_transfer" and n["Node Type"] != "ModifyTable"
    ]
    by_key = [n for n in reads if any(".key" in n.get(c, "") for c in ("Index Cond", "Recheck Cond", "Filter"))]
    assert reads and by_key == reads, reads


def _nodes(node):
    yield node
    for child in node.get("Plans", ()):
        yield from _nodes(child)
