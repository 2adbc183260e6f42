import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from config.errors import Conflict, InsufficientFunds, InvalidRequest
from payments.tests.factories import MerchantFactory
from wallets.models import Account, Entry, Transfer
from wallets.services import (
    _reversal_legs,
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


@pytest.fixture
def split(customer):
    """A 1000 wallet payment split three ways: 700 merchant, 30 platform, 270 recipient."""
    wallet = WalletFactory(customer=customer, balance=1000)
    accounts = [
        wallet,
        merchant_balance_account(merchant=customer.merchant, currency="usd"),
        account_get_or_create(kind=Account.Kind.PLATFORM, currency="usd"),
        account_get_or_create(kind=Account.Kind.RECIPIENT, merchant=customer.merchant, currency="usd", name="r1"),
    ]
    original = transfer_create(legs=list(zip(accounts, [-1000, 700, 30, 270], strict=True)), currency="usd")
    return original, accounts


def _legs(transfer) -> dict:
    return dict(transfer.entries.values_list("account_id", "amount"))


def test_partial_reversal_of_a_split_reverses_each_leg_in_proportion(split):
    original, (wallet, merchant, platform, recipient) = split

    reversal = transfer_reverse(transfer=original, amount=100)

    assert _legs(reversal) == {wallet.pk: 100, merchant.pk: -70, platform.pk: -3, recipient.pk: -27}
    assert reversal.amount == 100
    assert _balances(wallet, merchant, platform, recipient) == [100, 630, 27, 243]


def test_partial_reversal_rounds_exactly_with_the_remainder_to_the_first_legs(customer):
    wallet = WalletFactory(customer=customer, balance=10)
    a, b, c = (
        account_get_or_create(kind=Account.Kind.RECIPIENT, merchant=customer.merchant, currency="usd", name=n)
        for n in "abc"
    )
    original = transfer_create(legs=[(wallet, -10), (a, 3), (b, 3), (c, 4)], currency="usd")

    reversal = transfer_reverse(transfer=original, amount=5)

    # 5 of 10 is 1.5, 1.5 and 2: floors 1, 1, 2 and the one unit left to the first leg.
    assert _legs(reversal) == {wallet.pk: 5, a.pk: -2, b.pk: -1, c.pk: -2}


@pytest.mark.parametrize(
    "steps",
    [[1] * 10, [3, 3, 3, 1], [7, 2, 1], [1, 8, 1], [9, 1]],
    ids=lambda steps: "+".join(map(str, steps)),
)
def test_partial_reversals_of_a_split_end_exactly_at_the_full_negation(customer, steps):
    wallet = WalletFactory(customer=customer, balance=10)
    a, b, c = (
        account_get_or_create(kind=Account.Kind.RECIPIENT, merchant=customer.merchant, currency="usd", name=n)
        for n in "abc"
    )
    original = transfer_create(legs=[(wallet, -10), (a, 3), (b, 3), (c, 4)], currency="usd")
    legs = _legs(original)
    total = dict.fromkeys(legs, 0)

    for amount in steps:
        reversal = transfer_reverse(transfer=original, amount=amount)
        assert reversal.amount == amount
        for account_id, leg in _legs(reversal).items():
            assert (leg > 0) != (legs[account_id] > 0)  # always the opposite direction
            total[account_id] += leg
            assert abs(total[account_id]) <= abs(legs[account_id])  # never beyond the leg

    assert total == {account_id: -leg for account_id, leg in legs.items()}
    assert _balances(wallet, a, b, c) == [10, 0, 0, 0]
    with pytest.raises(Conflict):
        transfer_reverse(transfer=original, amount=1)


def test_full_reversal_of_a_partly_reversed_split_takes_what_is_left_of_each_leg(split):
    original, accounts = split
    transfer_reverse(transfer=original, amount=333)
    rest = transfer_reverse(transfer=original)
    assert rest.amount == 667
    assert _balances(*accounts) == [1000, 0, 0, 0]


def _parts(draw, total: int, most: int) -> list[int]:
    """`total` cut into 1 to `most` positive parts."""
    cuts = draw(st.sets(st.integers(min_value=1, max_value=total - 1), max_size=most - 1)) if total > 1 else set()
    points = [0, *sorted(cuts), total]
    return [b - a for a, b in zip(points, points[1:], strict=False)]


@given(data=st.data(), total=st.integers(min_value=1, max_value=10**9))
@settings(max_examples=300, deadline=None)
def test_reversal_legs_property(data, total):
    """Any split (several legs on either side), reversed in any steps: each step balances
    and moves each leg the other way by about its share (off by less than the number of
    legs: the audit's tolerance), no leg is ever reversed beyond itself, and the steps add
    up to the exact negation."""
    negatives, positives = _parts(data.draw, total, 3), _parts(data.draw, total, 5)
    original = [(f"n{i}", -x) for i, x in enumerate(negatives)] + [(f"p{i}", x) for i, x in enumerate(positives)]
    first = dict(original)
    steps = _parts(data.draw, total, 8)
    already = dict.fromkeys(first, 0)
    done = 0
    for amount in steps:
        step = _reversal_legs(legs=original, already=dict(already), reversed_total=done, amount=amount)
        assert sum(leg for _, leg in step) == 0
        assert sum(leg for _, leg in step if leg > 0) == amount
        for account_id, leg in step:
            assert leg != 0 and (leg > 0) != (first[account_id] > 0)
            assert abs(leg * total + first[account_id] * amount) < total * len(original)
            already[account_id] += leg
            assert abs(already[account_id]) <= abs(first[account_id])
        done += amount
    assert already == {account_id: -leg for account_id, leg in original}


def test_reversal_of_spent_money_is_insufficient_funds(customer):
    wallet = WalletFactory(customer=customer, balance=0)
    credit = wallet_credit(wallet=wallet, amount=100)
    dest = merchant_balance_account(merchant=customer.merchant, currency="usd")
    transfer_create(legs=[(wallet, -100), (dest, 100)], currency="usd")
    with pytest.raises(InsufficientFunds):
        transfer_reverse(transfer=credit)
    assert _balances(wallet) == [0]
