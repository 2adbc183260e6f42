"""The credit accounts a process remembers (credits.accounts._KNOWN): only committed
ones, and a debit through them moves the same money as one that read them."""

import pytest
from django.db import connection, transaction
from django.test.utils import CaptureQueriesContext

from credits import accounts
from credits.models import Grant
from credits.selectors import credit_account_get
from credits.services import credits_debit, credits_grant
from wallets.models import Account

pytestmark = pytest.mark.django_db(transaction=True)


def _account_reads(statements) -> int:
    """Reads of accounts before the debit's transaction begins (inside it, it locks them)."""
    before = []
    for q in statements:
        if q["sql"].startswith("BEGIN"):
            break
        before.append(q["sql"])
    return sum('FROM "wallets_account"' in sql for sql in before)


def test_accounts_created_in_a_transaction_that_rolls_back_are_not_remembered(customer):
    with pytest.raises(RuntimeError), transaction.atomic():
        accounts._accounts(customer)  # creates the credit account and its counter-accounts
        raise RuntimeError("rolled back")
    assert customer.pk not in accounts._KNOWN
    assert not Account.objects.filter(customer=customer).exists()
    credits_grant(customer=customer, units=5, source=Grant.Source.MERCHANT, reason="after the rollback")
    assert credits_debit(customer=customer, units=2)[1] == 3


def test_a_known_customer_is_debited_without_reading_its_accounts_and_to_the_unit(customer):
    credits_grant(customer=customer, units=10, source=Grant.Source.MERCHANT, reason="known")
    assert customer.pk in accounts._KNOWN  # read outside a transaction: committed
    with CaptureQueriesContext(connection) as ctx:
        _, balance = credits_debit(customer=customer, units=3)
    assert balance == 7 == credit_account_get(customer=customer).balance
    assert _account_reads(ctx.captured_queries) == 0
    accounts._known_clear()
    with CaptureQueriesContext(connection) as ctx:
        _, balance = credits_debit(customer=customer, units=3)
    assert balance == 4 == credit_account_get(customer=customer).balance
    assert _account_reads(ctx.captured_queries) == 1
