"""Transfers are append-only and balanced, in the database too (PostgreSQL triggers), and
no ledger table can be truncated on its own."""

import pytest
from django.db import DatabaseError, IntegrityError, connection, transaction

from payments.tests.factories import CustomerFactory, MerchantFactory
from wallets.models import Account, AppendOnlyError, Entry, Transfer
from wallets.services import merchant_balance_account, transfer_create, transfer_reverse
from wallets.tests.factories import WalletFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def transfer(customer):
    wallet = WalletFactory(customer=customer, balance=1000)
    dest = merchant_balance_account(merchant=customer.merchant, currency="usd")
    return transfer_create(
        legs=[(wallet, -300), (dest, 300)], currency="usd", merchant=customer.merchant, reference="o-1"
    )


def _sql(sql: str, params=()) -> None:
    with connection.cursor() as cursor:
        cursor.execute(sql, params)


def test_deleting_a_transfer_through_the_orm_is_refused(transfer):
    with pytest.raises(AppendOnlyError):
        transfer.delete()
    with pytest.raises(AppendOnlyError):
        Transfer.objects.filter(pk=transfer.pk).delete()
    assert Transfer.objects.filter(pk=transfer.pk).exists()


@pytest.mark.postgres
@pytest.mark.parametrize(
    ("column", "value"),
    [
        ("amount", "amount + 1"),
        ("currency", "'eur'"),
        ("kind", "'credit'"),
        ("merchant_id", "NULL"),
        ("idempotency_key", "'another'"),
        ("created_at", "created_at - interval '1 day'"),
        ("reverses_id", "id"),
    ],
)
def test_an_update_of_what_a_transfer_moved_is_refused_by_the_trigger(transfer, column, value):
    with pytest.raises(DatabaseError, match="append-only"), transaction.atomic():
        _sql(f"UPDATE wallets_transfer SET {column} = {value} WHERE id = %s", [transfer.pk])
    assert Transfer.objects.get(pk=transfer.pk).amount == 300


@pytest.mark.postgres
def test_the_merchant_of_a_system_transfer_cannot_be_set_either(customer):
    wallet = WalletFactory(customer=customer, balance=10)
    dest = merchant_balance_account(merchant=customer.merchant, currency="usd")
    system = transfer_create(legs=[(wallet, -1), (dest, 1)], currency="usd")
    assert system.merchant_id is None
    with pytest.raises(DatabaseError, match="append-only"), transaction.atomic():
        _sql("UPDATE wallets_transfer SET merchant_id = %s WHERE id = %s", [MerchantFactory().pk, system.pk])


@pytest.mark.postgres
def test_the_labels_of_a_transfer_may_be_corrected(transfer):
    Transfer.objects.filter(pk=transfer.pk).update(reference="o-1 (corrected)", description="typo")
    assert Transfer.objects.get(pk=transfer.pk).reference == "o-1 (corrected)"


@pytest.mark.postgres
def test_a_raw_delete_of_a_transfer_is_refused_by_the_trigger(transfer):
    with pytest.raises(DatabaseError, match="append-only"), transaction.atomic():
        _sql("DELETE FROM wallets_transfer WHERE id = %s", [transfer.pk])
    assert Transfer.objects.filter(pk=transfer.pk).exists()


@pytest.mark.postgres
@pytest.mark.parametrize(
    "sql",
    [
        "TRUNCATE wallets_entry",
        "TRUNCATE wallets_entry CASCADE",
        "TRUNCATE wallets_transfer CASCADE",
        "TRUNCATE wallets_transfer, wallets_entry CASCADE",
    ],
)
def test_truncating_ledger_tables_on_their_own_is_refused(transfer, sql):
    _sql("SET CONSTRAINTS ALL IMMEDIATE")  # TRUNCATE refuses to run with deferred checks pending
    with pytest.raises(DatabaseError, match="TRUNCATE refused"), transaction.atomic():
        _sql(sql)
    assert Entry.objects.filter(transfer=transfer).count() == 2


@pytest.mark.postgres
def test_emptying_the_whole_ledger_at_once_is_allowed(transfer):
    """What `manage.py flush` and the test runner's flush do (every table in one TRUNCATE)."""
    _sql("SET CONSTRAINTS ALL IMMEDIATE")
    _sql("TRUNCATE wallets_entry, wallets_transfer, wallets_hold, wallets_account CASCADE")
    assert not Transfer.objects.exists() and not Account.objects.exists()


def _unbalanced(customer) -> Transfer:
    """A transfer written past the services, with one leg only."""
    wallet = WalletFactory(customer=customer, balance=100)
    t = Transfer.objects.create(currency="usd", amount=50)
    Entry.objects.create(transfer=t, account=wallet, amount=-50, balance_after=50)
    return t


@pytest.mark.postgres
def test_an_unbalanced_transfer_is_refused_when_the_checks_run(customer):
    with pytest.raises(IntegrityError, match="does not balance"), transaction.atomic():
        _unbalanced(customer)
        _sql("SET CONSTRAINTS ALL IMMEDIATE")  # what COMMIT does


@pytest.mark.postgres
def test_an_entry_added_later_to_a_balanced_transfer_is_refused(transfer, customer):
    other = WalletFactory(customer=CustomerFactory(merchant=customer.merchant))  # a leg it has not
    _sql("SET CONSTRAINTS ALL IMMEDIATE")
    with pytest.raises(IntegrityError, match="does not balance"), transaction.atomic():
        Entry.objects.create(transfer=transfer, account=other, amount=5, balance_after=5)
        _sql("SET CONSTRAINTS ALL IMMEDIATE")


def test_a_second_leg_on_one_account_in_one_transfer_is_refused(transfer, customer):
    wallet = Account.objects.get(customer=customer)
    with pytest.raises(IntegrityError, match="entry_one_leg_per_account|UNIQUE"), transaction.atomic():
        Entry.objects.create(transfer=transfer, account=wallet, amount=5, balance_after=705)


@pytest.mark.postgres
def test_a_transfer_whose_amount_is_not_what_its_legs_move_is_refused(customer):
    wallet = WalletFactory(customer=customer, balance=100)
    dest = merchant_balance_account(merchant=customer.merchant, currency="usd")
    with pytest.raises(IntegrityError, match="does not balance"), transaction.atomic():
        t = Transfer.objects.create(currency="usd", amount=51)
        Entry.objects.bulk_create(
            [
                Entry(transfer=t, account=wallet, amount=-50, balance_after=50),
                Entry(transfer=t, account=dest, amount=50, balance_after=50),
            ]
        )
        _sql("SET CONSTRAINTS ALL IMMEDIATE")


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_an_unbalanced_transfer_fails_at_commit_and_leaves_nothing(customer):
    transfers = Transfer.objects.count()
    with pytest.raises(IntegrityError, match="does not balance"):
        with transaction.atomic():
            _unbalanced(customer)
    assert Transfer.objects.count() == transfers


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_every_service_that_writes_transfers_commits_through_the_triggers(customer, django_user_model):
    """Real commits (not the test's rolled-back transaction): the deferred checks run."""
    from wallets.services import hold_capture, hold_create, wallet_adjust, wallet_credit, wallet_debit

    wallet = WalletFactory(customer=customer, balance=1000)
    wallet_credit(wallet=wallet, amount=10, idempotency_key="c")
    wallet_debit(wallet=wallet, amount=10)
    staff = django_user_model.objects.create_user("ops", is_staff=True)
    wallet_adjust(wallet=wallet, amount=-5, reason="fix", staff_user=staff)
    hold_capture(hold=hold_create(account=wallet, amount=100), amount=60)
    dest = merchant_balance_account(merchant=customer.merchant, currency="usd")
    funding = Account.objects.get(kind=Account.Kind.EXTERNAL_FUNDING, merchant=customer.merchant)
    split = transfer_create(legs=[(wallet, -30), (dest, 20), (funding, 10)], currency="usd")
    transfer_reverse(transfer=split, amount=7)
    transfer_reverse(transfer=split)
    Transfer.objects.filter(pk=split.pk).update(description="labels may change")
    assert Account.objects.get(pk=wallet.pk).balance == 1000 + 10 - 10 - 5 - 60
