import pytest
from django.db import DatabaseError, IntegrityError, connection, transaction

from wallets.models import Account, AppendOnlyError, Entry
from wallets.tests.factories import WalletFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def entry(customer):
    WalletFactory(customer=customer, balance=100)
    return Entry.objects.get(account__customer=customer)


def test_saving_an_existing_entry_is_refused(entry):
    entry.amount = 1_000_000
    with pytest.raises(AppendOnlyError):
        entry.save()
    assert Entry.objects.get(pk=entry.pk).amount == 100


def test_deleting_an_entry_is_refused(entry):
    with pytest.raises(AppendOnlyError):
        entry.delete()
    assert Entry.objects.filter(pk=entry.pk).exists()


def test_queryset_update_and_delete_are_refused(entry):
    with pytest.raises(AppendOnlyError):
        Entry.objects.filter(pk=entry.pk).update(amount=5)
    with pytest.raises(AppendOnlyError):
        Entry.objects.all().delete()
    with pytest.raises(AppendOnlyError), transaction.atomic():
        Entry.objects.bulk_update([entry], ["amount"])
    assert Entry.objects.get(pk=entry.pk).amount == 100


@pytest.mark.postgres
@pytest.mark.parametrize(
    "sql",
    ["UPDATE wallets_entry SET amount = amount + 1 WHERE id = %s", "DELETE FROM wallets_entry WHERE id = %s"],
)
def test_raw_sql_update_or_delete_of_an_entry_is_refused_by_the_trigger(entry, sql):
    with pytest.raises(DatabaseError, match="append-only"):
        with transaction.atomic(), connection.cursor() as cursor:
            cursor.execute(sql, [entry.pk])
    assert Entry.objects.get(pk=entry.pk).amount == 100


def test_the_database_refuses_a_negative_no_overdraft_balance(customer):
    wallet = WalletFactory(customer=customer, balance=0)
    with pytest.raises(IntegrityError), transaction.atomic():
        Account.objects.filter(pk=wallet.pk).update(balance=-1)
    with pytest.raises(IntegrityError), transaction.atomic():
        Account.objects.filter(pk=wallet.pk).update(held=1)  # held above balance: available < 0
