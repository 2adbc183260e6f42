import pytest

from config.errors import Conflict, InsufficientFunds, InvalidRequest
from payments.tests.factories import MerchantFactory
from wallets.models import Account, Entry, Transfer
from wallets.services import (
    account_get_or_create,
    merchant_balance_account,
    transfer_create,
    transfer_reverse,
    wallet_credit,
)
from wallets.tests.factories import WalletFactory

pytestmark = pytest.mark.django_db


def _balances(*accounts) -> list[int]:
    return [Account.objects.get(pk=a.pk).balance for a in accounts]


def test_transfer_moves_the_amount_and_records_balance_after(customer):
    wallet = WalletFactory(customer=customer, balance=1000)
    dest = merchant_balance_account(merchant=customer.merchant, currency="usd")

    transfer = transfer_create(legs=[(wallet, -300), (dest, 300)], currency="usd", reference="order-1")

    assert _balances(wallet, dest) == [700, 300]
    assert transfer.amount == 300
    entries = {e.account_id: e for e in transfer.entries.all()}
    assert (entries[wallet.pk].amount, entries[wallet.pk].balance_after) == (-300, 700)
    assert (entries[dest.pk].amount, entries[dest.pk].balance_after) == (300, 300)
    assert wallet.balance == 700  # the caller's object is refreshed too


def test_multi_leg_split_is_balanced_as_a_whole(customer):
    wallet = WalletFactory(customer=customer, balance=1000)
    merchant_acc = merchant_balance_account(merchant=customer.merchant, currency="usd")
    platform = account_get_or_create(kind=Account.Kind.PLATFORM, currency="usd")
    recipient = account_get_or_create(
        kind=Account.Kind.RECIPIENT, merchant=customer.merchant, currency="usd", name="r1"
    )

    transfer = transfer_create(
        legs=[(wallet, -1000), (merchant_acc, 700), (platform, 30), (recipient, 270)], currency="usd"
    )

    assert _balances(wallet, merchant_acc, platform, recipient) == [0, 700, 30, 270]
    assert transfer.amount == 1000
    assert transfer.entries.count() == 4


@pytest.mark.parametrize(
    "legs",
    [
        [(-100,), (99,)],  # unbalanced
        [(-100,)],  # one leg
        [(0,), (0,)],  # zero legs
    ],
)
def test_bad_legs_are_refused_and_nothing_moves(customer, legs):
    wallet = WalletFactory(customer=customer, balance=1000)
    dest = merchant_balance_account(merchant=customer.merchant, currency="usd")
    accounts = [wallet, dest]
    before = Entry.objects.count()
    with pytest.raises(InvalidRequest):
        transfer_create(legs=[(accounts[i], leg[0]) for i, leg in enumerate(legs)], currency="usd")
    assert Entry.objects.count() == before
    assert _balances(wallet, dest) == [1000, 0]


def test_float_amount_is_refused(customer):
    wallet = WalletFactory(customer=customer, balance=1000)
    dest = merchant_balance_account(merchant=customer.merchant, currency="usd")
    with pytest.raises(InvalidRequest):
        transfer_create(legs=[(wallet, -1.5), (dest, 1.5)], currency="usd")


def test_mixed_currencies_are_refused(customer):
    usd = WalletFactory(customer=customer, balance=1000)
    eur = merchant_balance_account(merchant=customer.merchant, currency="eur")
    with pytest.raises(InvalidRequest) as exc:
        transfer_create(legs=[(usd, -100), (eur, 100)], currency="usd")
    assert exc.value.param == "currency"


def test_insufficient_funds_changes_nothing(customer):
    wallet = WalletFactory(customer=customer, balance=100)
    dest = merchant_balance_account(merchant=customer.merchant, currency="usd")
    transfers = Transfer.objects.count()
    with pytest.raises(InsufficientFunds):
        transfer_create(legs=[(wallet, -101), (dest, 101)], currency="usd")
    assert _balances(wallet, dest) == [100, 0]
    assert Transfer.objects.count() == transfers


def test_external_funding_may_go_negative_and_currency_sums_to_zero(customer):
    wallet = WalletFactory(customer=customer, balance=500)
    funding = Account.objects.get(kind=Account.Kind.EXTERNAL_FUNDING, merchant=customer.merchant, currency="usd")
    assert funding.balance == -500
    assert sum(Account.objects.filter(currency="usd").values_list("balance", flat=True)) == 0
    assert wallet.balance == 500


def test_idempotent_retry_returns_the_first_transfer_and_moves_nothing(customer):
    wallet = WalletFactory(customer=customer, balance=1000)
    dest = merchant_balance_account(merchant=customer.merchant, currency="usd")
    first = transfer_create(
        legs=[(wallet, -100), (dest, 100)], currency="usd", merchant=customer.merchant, idempotency_key="k1"
    )
    again = transfer_create(
        legs=[(wallet, -100), (dest, 100)], currency="usd", merchant=customer.merchant, idempotency_key="k1"
    )
    assert again.pk == first.pk
    assert _balances(wallet, dest) == [900, 100]
    assert Transfer.objects.filter(idempotency_key="k1").count() == 1


def test_idempotency_key_with_other_legs_is_a_conflict(customer):
    wallet = WalletFactory(customer=customer, balance=1000)
    dest = merchant_balance_account(merchant=customer.merchant, currency="usd")
    transfer_create(legs=[(wallet, -100), (dest, 100)], currency="usd", merchant=customer.merchant, idempotency_key="k")
    with pytest.raises(Conflict):
        transfer_create(
            legs=[(wallet, -200), (dest, 200)], currency="usd", merchant=customer.merchant, idempotency_key="k"
        )
    assert _balances(wallet, dest) == [900, 100]


def test_idempotency_keys_are_scoped_per_merchant(customer):
    other = MerchantFactory()
    wallet = WalletFactory(customer=customer, balance=1000)
    dest = merchant_balance_account(merchant=customer.merchant, currency="usd")
    transfer_create(legs=[(wallet, -100), (dest, 100)], currency="usd", merchant=customer.merchant, idempotency_key="k")
    transfer_create(legs=[(wallet, -100), (dest, 100)], currency="usd", merchant=other, idempotency_key="k")
    assert _balances(wallet, dest) == [800, 200]


def test_full_reversal_restores_balances_once(customer):
    wallet = WalletFactory(customer=customer, balance=1000)
    dest = merchant_balance_account(merchant=customer.merchant, currency="usd")
    original = transfer_create(legs=[(wallet, -400), (dest, 400)], currency="usd", reference="o-1")

    reversal = transfer_reverse(transfer=original)

    assert reversal.reverses_id == original.pk
    assert reversal.kind == Transfer.Kind.REVERSAL
    assert reversal.reference == "o-1"
    assert _balances(wallet, dest) == [1000, 0]
    with pytest.raises(Conflict):
        transfer_reverse(transfer=original)
    assert _balances(wallet, dest) == [1000, 0]


def test_partial_reversals_never_exceed_the_original(customer):
    wallet = WalletFactory(customer=customer, balance=1000)
    dest = merchant_balance_account(merchant=customer.merchant, currency="usd")
    original = transfer_create(legs=[(wallet, -400), (dest, 400)], currency="usd")

    transfer_reverse(transfer=original, amount=150)
    with pytest.raises(InvalidRequest):
        transfer_reverse(transfer=original, amount=251)
    rest = transfer_reverse(transfer=original)  # what remains: 250

    assert rest.amount == 250
    assert _balances(wallet, dest) == [1000, 0]
    with pytest.raises(Conflict):
        transfer_reverse(transfer=original, amount=1)


def test_a_reversal_cannot_be_reversed(customer):
    wallet = WalletFactory(customer=customer, balance=1000)
    dest = merchant_balance_account(merchant=customer.merchant, currency="usd")
    reversal = transfer_reverse(transfer=transfer_create(legs=[(wallet, -1), (dest, 1)], currency="usd"))
    with pytest.raises(InvalidRequest):
        transfer_reverse(transfer=reversal)


def test_multi_leg_reversal_is_full_only(customer):
    wallet = WalletFactory(customer=customer, balance=1000)
    a = merchant_balance_account(merchant=customer.merchant, currency="usd")
    b = account_get_or_create(kind=Account.Kind.PLATFORM, currency="usd")
    original = transfer_create(legs=[(wallet, -100), (a, 90), (b, 10)], currency="usd")
    with pytest.raises(InvalidRequest):
        transfer_reverse(transfer=original, amount=50)
    transfer_reverse(transfer=original)
    assert _balances(wallet, a, b) == [1000, 0, 0]


def test_reversal_of_spent_money_is_insufficient_funds(customer):
    wallet = WalletFactory(customer=customer, balance=0)
    credit = wallet_credit(wallet=wallet, amount=100)
    dest = merchant_balance_account(merchant=customer.merchant, currency="usd")
    transfer_create(legs=[(wallet, -100), (dest, 100)], currency="usd")
    with pytest.raises(InsufficientFunds):
        transfer_reverse(transfer=credit)
    assert _balances(wallet) == [0]
