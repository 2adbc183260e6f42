"""wallet_debits_many: many wallet debits posted set-based, with wallet_debit's rules."""

import threading

import pytest
from django.db import connection

from config.errors import InvalidRequest
from payments.tests.factories import CustomerFactory, MerchantFactory
from wallets.models import Account, Entry
from wallets.services import hold_create, merchant_balance, wallet_debit, wallet_debits_many
from wallets.tests.factories import WalletFactory
from webhooks.models import OutboundEvent

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("shards")]


def test_debits_are_checked_in_order_and_a_short_wallet_is_skipped(merchant):
    a = WalletFactory(customer=CustomerFactory(merchant=merchant), balance=250)
    b = WalletFactory(customer=CustomerFactory(merchant=merchant), balance=100)
    hold_create(account=b, amount=60)  # available 40
    results = wallet_debits_many(debits=[(a, 100, "r1"), (a, 100, "r2"), (a, 100, "r3"), (b, 50, "r4"), (b, 40, "r5")])
    assert [t is not None for t in results] == [True, True, False, False, True]
    a.refresh_from_db()
    b.refresh_from_db()
    assert (a.balance, b.balance, b.held) == (50, 60, 60)
    assert merchant_balance(merchant=merchant, currency="usd") == 240
    # balance_after follows each account's running balance, in posting order
    assert list(Entry.objects.filter(account=a).order_by("id").values_list("balance_after", flat=True)) == [
        250,
        150,
        50,
    ]
    events = OutboundEvent.objects.filter(type="wallet.debited").order_by("created_at")
    assert sorted((e.data["reference"], e.data["balance"]) for e in events) == [("r1", 150), ("r2", 50), ("r5", 60)]


def test_one_merchant_and_currency_per_call(merchant):
    a = WalletFactory(customer=CustomerFactory(merchant=merchant), balance=10)
    b = WalletFactory(customer=CustomerFactory(merchant=MerchantFactory()), balance=10)
    with pytest.raises(InvalidRequest):
        wallet_debits_many(debits=[(a, 1, ""), (b, 1, "")])
    with pytest.raises(InvalidRequest):
        wallet_debits_many(debits=[(a, 0, "")])


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_racing_single_debits_never_overdraw_the_wallet(merchant):
    wallet = WalletFactory(customer=CustomerFactory(merchant=merchant), balance=1000)
    barrier, posted = threading.Barrier(5), []

    def batch():
        barrier.wait()
        try:
            posted.extend(
                t for t in wallet_debits_many(debits=[(Account.objects.get(pk=wallet.pk), 100, "b")] * 4) if t
            )
        finally:
            connection.close()

    def single():
        barrier.wait()
        try:
            for _ in range(4):
                try:
                    posted.append(wallet_debit(wallet=Account.objects.get(pk=wallet.pk), amount=100))
                except Exception:
                    pass
        finally:
            connection.close()

    threads = [threading.Thread(target=batch) for _ in range(3)] + [threading.Thread(target=single) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wallet.refresh_from_db()
    assert len(posted) == 10 and wallet.balance == 0
