import pytest

from config.currencies import MAX_AMOUNT
from config.errors import Conflict, InsufficientFunds, InvalidRequest
from wallets.models import Account, Transfer
from wallets.services import (
    merchant_balance_account,
    merchant_funding_account,
    wallet_adjust,
    wallet_create,
    wallet_credit,
    wallet_debit,
)
from wallets.tests.factories import WalletFactory
from webhooks.models import OutboundEvent

pytestmark = pytest.mark.django_db


def test_one_wallet_per_customer_and_currency(customer):
    wallet = wallet_create(customer=customer, currency="USD")
    assert (wallet.kind, wallet.currency, wallet.merchant_id) == ("customer_wallet", "usd", customer.merchant_id)
    with pytest.raises(Conflict):
        wallet_create(customer=customer, currency="usd")
    assert wallet_create(customer=customer, currency="eur").currency == "eur"


def test_credit_is_funded_by_the_merchant_funding_account_and_emits_an_event(wallet):
    transfer = wallet_credit(wallet=wallet, amount=2500, reference="topup-1", reason="promo")

    assert Account.objects.get(pk=wallet.pk).balance == 2500
    funding = Account.objects.get(kind=Account.Kind.EXTERNAL_FUNDING, merchant_id=wallet.merchant_id, currency="usd")
    assert funding.balance == -2500
    assert (transfer.kind, transfer.reference, transfer.description) == ("credit", "topup-1", "promo")
    event = OutboundEvent.objects.get(type="wallet.credited")
    assert event.merchant_id == wallet.merchant_id
    assert event.data["amount"] == 2500
    assert event.data["balance"] == 2500
    assert event.data["transfer"] == str(transfer.pk)


def test_debit_goes_to_the_merchant_balance_and_emits_an_event(wallet):
    wallet_credit(wallet=wallet, amount=1000)
    wallet_debit(wallet=wallet, amount=400, reference="order-9")
    merchant_balance = Account.objects.get(kind=Account.Kind.MERCHANT_BALANCE, merchant_id=wallet.merchant_id)
    assert Account.objects.get(pk=wallet.pk).balance == 600
    assert merchant_balance.balance == 400
    event = OutboundEvent.objects.get(type="wallet.debited")
    assert (event.data["amount"], event.data["balance"], event.data["reference"]) == (400, 600, "order-9")


def test_debit_above_balance_changes_nothing_and_emits_nothing(wallet):
    wallet_credit(wallet=wallet, amount=100)
    transfers = Transfer.objects.count()
    with pytest.raises(InsufficientFunds):
        wallet_debit(wallet=wallet, amount=101)
    assert Account.objects.get(pk=wallet.pk).balance == 100
    assert Transfer.objects.count() == transfers
    assert not OutboundEvent.objects.filter(type="wallet.debited").exists()


def test_idempotent_credit_retry_moves_nothing_and_emits_once(wallet):
    first = wallet_credit(wallet=wallet, amount=100, idempotency_key="abc")
    again = wallet_credit(wallet=wallet, amount=100, idempotency_key="abc")
    assert again.pk == first.pk
    assert Account.objects.get(pk=wallet.pk).balance == 100
    assert OutboundEvent.objects.filter(type="wallet.credited").count() == 1


def test_idempotent_debit_retry_after_spending_still_returns_the_first(wallet):
    wallet_credit(wallet=wallet, amount=100)
    first = wallet_debit(wallet=wallet, amount=100, idempotency_key="d1")
    again = wallet_debit(wallet=wallet, amount=100, idempotency_key="d1")  # no InsufficientFunds: a replay
    assert again.pk == first.pk
    assert Account.objects.get(pk=wallet.pk).balance == 0


@pytest.mark.parametrize("amount", [0, -5, 1.0, True, "10"])
def test_amount_must_be_a_positive_integer(wallet, amount):
    with pytest.raises(InvalidRequest):
        wallet_credit(wallet=wallet, amount=amount)
    assert Account.objects.get(pk=wallet.pk).balance == 0


def test_staff_adjustment_records_reason_and_user(wallet, django_user_model):
    staff = django_user_model.objects.create_user("ops", is_staff=True)
    credit = wallet_adjust(wallet=wallet, amount=700, reason="goodwill", staff_user=staff)
    debit = wallet_adjust(wallet=wallet, amount=-200, reason="chargeback", staff_user=staff)
    assert (credit.kind, credit.description, credit.created_by) == ("adjustment", "goodwill", staff)
    assert (debit.kind, debit.description, debit.created_by) == ("adjustment", "chargeback", staff)
    assert Account.objects.get(pk=wallet.pk).balance == 500
    with pytest.raises(InvalidRequest):
        wallet_adjust(wallet=wallet, amount=100, reason="  ", staff_user=staff)
    with pytest.raises(InsufficientFunds):
        wallet_adjust(wallet=wallet, amount=-501, reason="too much", staff_user=staff)


def _balances(*accounts) -> list[int]:
    return [Account.objects.get(pk=a.pk).balance for a in accounts]


def test_a_staff_credit_then_the_same_debit_leaves_every_account_as_before(wallet, django_user_model):
    staff = django_user_model.objects.create_user("ops", is_staff=True)
    wallet_credit(wallet=wallet, amount=1000)
    wallet_debit(wallet=wallet, amount=300)
    funding = merchant_funding_account(merchant=wallet.merchant, currency="usd")
    merchant = merchant_balance_account(merchant=wallet.merchant, currency="usd")
    before = _balances(wallet, funding, merchant)
    assert before == [700, -1000, 300]

    wallet_adjust(wallet=wallet, amount=250, reason="goodwill", staff_user=staff)
    assert _balances(wallet, funding, merchant) == [950, -1250, 300]
    debit = wallet_adjust(wallet=wallet, amount=-250, reason="goodwill was a mistake", staff_user=staff)

    assert _balances(wallet, funding, merchant) == before  # the merchant was not paid by the correction
    legs = dict(debit.entries.values_list("account_id", "amount"))
    assert legs == {wallet.pk: -250, funding.pk: 250}
    events = OutboundEvent.objects.filter(type__in=["wallet.credited", "wallet.debited"]).order_by("created_at")
    assert [(e.type, e.data["amount"]) for e in events][-2:] == [("wallet.credited", 250), ("wallet.debited", 250)]


@pytest.mark.parametrize("amount", [10**19, -(10**19), MAX_AMOUNT + 1, -MAX_AMOUNT - 1])
def test_staff_adjustment_beyond_the_maximum_is_refused(wallet, django_user_model, amount):
    staff = django_user_model.objects.create_user("ops", is_staff=True)
    with pytest.raises(InvalidRequest) as exc:
        wallet_adjust(wallet=wallet, amount=amount, reason="typo", staff_user=staff)
    assert exc.value.param == "amount"
    assert not Transfer.objects.filter(kind="adjustment").exists()


@pytest.mark.parametrize("service", [wallet_credit, wallet_debit])
def test_credit_and_debit_beyond_the_maximum_are_refused(wallet, service):
    with pytest.raises(InvalidRequest):
        service(wallet=wallet, amount=10**19)


def test_staff_adjustment_is_idempotent_on_its_key(wallet, django_user_model):
    staff = django_user_model.objects.create_user("ops", is_staff=True)
    first = wallet_adjust(wallet=wallet, amount=100, reason="x", staff_user=staff, idempotency_key="admin-adjust:t1")
    again = wallet_adjust(wallet=wallet, amount=100, reason="x", staff_user=staff, idempotency_key="admin-adjust:t1")
    assert again.pk == first.pk
    assert Account.objects.get(pk=wallet.pk).balance == 100
    with pytest.raises(Conflict):
        wallet_adjust(wallet=wallet, amount=-100, reason="x", staff_user=staff, idempotency_key="admin-adjust:t1")


def test_credits_unit_accounts_work_like_money(customer):
    from wallets.services import account_get_or_create, transfer_create

    credits = account_get_or_create(
        kind=Account.Kind.CREDITS, customer=customer, merchant=customer.merchant, currency="credits"
    )
    source = account_get_or_create(kind=Account.Kind.EXTERNAL_FUNDING, merchant=customer.merchant, currency="credits")
    transfer_create(legs=[(source, -50), (credits, 50)], currency="credits")
    with pytest.raises(InsufficientFunds):
        transfer_create(legs=[(credits, -51), (source, 51)], currency="credits")
    assert Account.objects.get(pk=credits.pk).balance == 50


def test_factory_wallet(customer):
    assert WalletFactory(customer=customer, balance=5).balance == 5
