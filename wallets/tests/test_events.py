"""Which wallet balance changes announce themselves (services.py, "Events"): every change
posted to a customer wallet's balance emits one wallet.credited / wallet.debited in the
same transaction; holds that only reserve or release emit nothing."""

from datetime import timedelta

import pytest
from django.db import transaction
from django.utils import timezone

from config.errors import IllegalTransition, InsufficientFunds
from wallets.models import Account
from wallets.services import (
    account_get_or_create,
    hold_capture,
    hold_create,
    hold_void,
    holds_expire,
    merchant_balance_account,
    transfer_create,
    transfer_reverse,
    wallet_credit,
    wallet_debit,
)
from wallets.tests.factories import WalletFactory
from webhooks.models import OutboundEvent

pytestmark = pytest.mark.django_db

WALLET_EVENTS = ["wallet.credited", "wallet.debited"]


@pytest.fixture
def funded(customer):
    wallet = WalletFactory(customer=customer, balance=1000)
    OutboundEvent.objects.all().delete()  # the factory's funding credit is not what these tests look at
    return wallet


def _events() -> list[OutboundEvent]:
    return list(OutboundEvent.objects.filter(type__in=WALLET_EVENTS).order_by("created_at"))


def test_a_capture_from_a_wallet_emits_wallet_debited_for_the_captured_amount(funded):
    hold = hold_create(account=funded, amount=300, reference="bid-1")
    assert _events() == []  # reserving changes available, not the balance

    hold = hold_capture(hold=hold, amount=120)

    [event] = _events()
    assert event.type == "wallet.debited" and event.merchant_id == funded.merchant_id
    assert event.data | {"transfer": None} == {
        "wallet": str(funded.pk),
        "customer": str(funded.customer_id),
        "currency": "usd",
        "amount": 120,
        "balance": 880,
        "available": 880,
        "transfer": None,
        "reference": "bid-1",
        "hold": str(hold.pk),
    }
    assert event.data["transfer"] == str(hold.capture_transfer_id)


def test_a_capture_that_fails_emits_nothing(funded, monkeypatch):
    hold = hold_create(account=funded, amount=300, expires_at=timezone.now() + timedelta(minutes=1))
    later = timezone.now() + timedelta(minutes=5)
    monkeypatch.setattr("wallets.holds.timezone.now", lambda: later)
    with pytest.raises(IllegalTransition), transaction.atomic():
        hold_capture(hold=hold)
    assert _events() == []


def test_voided_and_expired_holds_emit_nothing(funded):
    hold_void(hold=hold_create(account=funded, amount=100))
    hold_create(account=funded, amount=100, expires_at=timezone.now() + timedelta(seconds=30))
    assert holds_expire(now=timezone.now() + timedelta(minutes=1)) == 1
    assert _events() == []


def test_a_capture_of_a_hold_on_another_kind_of_account_emits_no_wallet_event(funded, customer):
    merchant = merchant_balance_account(merchant=customer.merchant, currency="usd")
    wallet_debit(wallet=funded, amount=500)
    OutboundEvent.objects.all().delete()
    platform = account_get_or_create(kind=Account.Kind.PLATFORM, currency="usd")
    hold_capture(hold=hold_create(account=merchant, amount=200, destination=platform))
    assert _events() == []


def test_a_capture_into_another_customers_wallet_also_emits_wallet_credited_for_it(funded, customer):
    from payments.tests.factories import CustomerFactory

    seller = WalletFactory(customer=CustomerFactory(merchant=customer.merchant), balance=0)
    OutboundEvent.objects.all().delete()

    hold = hold_capture(hold=hold_create(account=funded, amount=300, destination=seller, reference="lot-7"))

    assert [(e.type, e.data["wallet"], e.data["amount"], e.data["balance"]) for e in _events()] == [
        ("wallet.debited", str(funded.pk), 300, 700),
        ("wallet.credited", str(seller.pk), 300, 300),
    ]
    assert {e.data["hold"] for e in _events()} == {str(hold.pk)}


def test_reversing_a_debit_emits_wallet_credited_and_reversing_a_credit_wallet_debited(funded):
    debit = wallet_debit(wallet=funded, amount=400)
    credit = wallet_credit(wallet=funded, amount=50)
    OutboundEvent.objects.all().delete()

    back = transfer_reverse(transfer=debit, amount=150)
    taken = transfer_reverse(transfer=credit)

    assert [(e.type, e.data["amount"], e.data["balance"], e.data["reverses"]) for e in _events()] == [
        ("wallet.credited", 150, 800, str(debit.pk)),
        ("wallet.debited", 50, 750, str(credit.pk)),
    ]
    assert [e.data["transfer"] for e in _events()] == [str(back.pk), str(taken.pk)]


def test_reversing_a_capture_emits_wallet_credited(funded):
    hold = hold_capture(hold=hold_create(account=funded, amount=300))
    OutboundEvent.objects.all().delete()
    transfer_reverse(transfer=hold.capture_transfer, amount=100)
    [event] = _events()
    assert (event.type, event.data["amount"], event.data["balance"]) == ("wallet.credited", 100, 800)


def test_a_reversal_of_a_split_emits_once_per_wallet_it_touches(funded, customer):
    from payments.tests.factories import CustomerFactory

    other = WalletFactory(customer=CustomerFactory(merchant=customer.merchant), balance=0)
    merchant = merchant_balance_account(merchant=customer.merchant, currency="usd")
    split = transfer_create(legs=[(funded, -100), (merchant, 60), (other, 40)], currency="usd")
    OutboundEvent.objects.all().delete()

    transfer_reverse(transfer=split, amount=50)

    assert sorted((e.type, e.data["wallet"], e.data["amount"]) for e in _events()) == sorted(
        [("wallet.credited", str(funded.pk), 50), ("wallet.debited", str(other.pk), 20)]
    )


def test_a_reversal_between_other_accounts_emits_nothing(funded, customer):
    merchant = merchant_balance_account(merchant=customer.merchant, currency="usd")
    platform = account_get_or_create(kind=Account.Kind.PLATFORM, currency="usd")
    wallet_debit(wallet=funded, amount=100)
    fee = transfer_create(legs=[(merchant, -10), (platform, 10)], currency="usd")
    OutboundEvent.objects.all().delete()
    transfer_reverse(transfer=fee)
    assert _events() == []


def test_a_refused_reversal_emits_nothing(funded):
    credit = wallet_credit(wallet=funded, amount=100)
    wallet_debit(wallet=funded, amount=1100)
    OutboundEvent.objects.all().delete()
    with pytest.raises(InsufficientFunds), transaction.atomic():
        transfer_reverse(transfer=credit)
    assert _events() == []
