from datetime import timedelta

import pytest
from django.utils import timezone

from config.errors import Conflict, IllegalTransition, InsufficientFunds, InvalidRequest
from wallets.models import Account, Hold, Transfer
from wallets.services import (
    account_get_or_create,
    hold_capture,
    hold_create,
    hold_void,
    holds_expire,
    merchant_balance_account,
    wallet_debit,
)
from wallets.tests.factories import WalletFactory

pytestmark = pytest.mark.django_db


def _state(account) -> tuple[int, int]:
    account = Account.objects.get(pk=account.pk)
    return account.balance, account.held


@pytest.fixture
def funded(customer):
    return WalletFactory(customer=customer, balance=1000)


def test_hold_reserves_available_not_balance(funded):
    hold = hold_create(account=funded, amount=300, reference="auction-1")
    assert hold.status == Hold.Status.PENDING
    assert _state(funded) == (1000, 300)
    assert Account.objects.get(pk=funded.pk).available == 700


def test_hold_above_available_is_refused_and_changes_nothing(funded):
    hold_create(account=funded, amount=800)
    with pytest.raises(InsufficientFunds):
        hold_create(account=funded, amount=201)
    assert _state(funded) == (1000, 800)
    assert Hold.objects.filter(account=funded).count() == 1


def test_debit_cannot_spend_held_money(funded):
    hold_create(account=funded, amount=800)
    with pytest.raises(InsufficientFunds):
        wallet_debit(wallet=funded, amount=201)
    wallet_debit(wallet=funded, amount=200)
    assert _state(funded) == (800, 800)


def test_full_capture_posts_to_the_merchant_and_releases_the_hold(funded):
    hold = hold_create(account=funded, amount=300)
    hold = hold_capture(hold=hold)
    dest = merchant_balance_account(merchant=funded.merchant, currency="usd")
    assert (hold.status, hold.captured_amount) == (Hold.Status.CAPTURED, 300)
    assert _state(funded) == (700, 0)
    assert _state(dest) == (300, 0)
    assert hold.capture_transfer.kind == Transfer.Kind.HOLD_CAPTURE


def test_partial_capture_releases_the_rest(funded):
    hold = hold_create(account=funded, amount=300)
    hold = hold_capture(hold=hold, amount=120)
    assert hold.captured_amount == 120
    assert _state(funded) == (880, 0)


def test_capture_more_than_held_is_refused(funded):
    hold = hold_create(account=funded, amount=300)
    with pytest.raises(InvalidRequest):
        hold_capture(hold=hold, amount=301)
    assert _state(funded) == (1000, 300)


def test_capture_with_splits(funded):
    hold = hold_create(account=funded, amount=500)
    merchant = merchant_balance_account(merchant=funded.merchant, currency="usd")
    platform = account_get_or_create(kind=Account.Kind.PLATFORM, currency="usd")
    hold_capture(hold=hold, amount=400, splits=[(merchant, 380), (platform, 20)])
    assert _state(funded) == (600, 0)
    assert _state(merchant) == (380, 0)
    assert _state(platform) == (20, 0)


def test_splits_must_sum_to_the_captured_amount(funded):
    hold = hold_create(account=funded, amount=500)
    merchant = merchant_balance_account(merchant=funded.merchant, currency="usd")
    with pytest.raises(InvalidRequest):
        hold_capture(hold=hold, amount=400, splits=[(merchant, 399)])
    assert Hold.objects.get(pk=hold.pk).status == Hold.Status.PENDING


def test_void_releases_without_posting(funded):
    hold = hold_create(account=funded, amount=300)
    transfers = Transfer.objects.count()
    hold = hold_void(hold=hold)
    assert hold.status == Hold.Status.VOIDED
    assert _state(funded) == (1000, 0)
    assert Transfer.objects.count() == transfers


@pytest.mark.parametrize("first", ["capture", "void"])
@pytest.mark.parametrize("second", ["capture", "void"])
def test_capture_or_void_of_a_resolved_hold_is_a_conflict(funded, first, second):
    actions = {"capture": lambda h: hold_capture(hold=h), "void": lambda h: hold_void(hold=h)}
    hold = hold_create(account=funded, amount=300)
    actions[first](hold)
    after_first = _state(funded)
    with pytest.raises(IllegalTransition):
        actions[second](hold)
    assert _state(funded) == after_first


def test_expired_holds_are_released_by_holds_expire(funded):
    now = timezone.now()
    soon = hold_create(account=funded, amount=100, expires_at=now + timedelta(minutes=1))
    later = hold_create(account=funded, amount=200, expires_at=now + timedelta(hours=1))
    never = hold_create(account=funded, amount=300)

    assert holds_expire(now=now + timedelta(minutes=2)) == 1
    assert holds_expire(now=now + timedelta(minutes=2)) == 0  # safe to run twice

    assert Hold.objects.get(pk=soon.pk).status == Hold.Status.EXPIRED
    assert Hold.objects.get(pk=later.pk).status == Hold.Status.PENDING
    assert Hold.objects.get(pk=never.pk).status == Hold.Status.PENDING
    assert _state(funded) == (1000, 500)
    with pytest.raises(IllegalTransition):
        hold_capture(hold=soon)


def test_capturing_a_hold_past_its_expiry_is_a_conflict(funded, monkeypatch):
    hold = hold_create(account=funded, amount=100, expires_at=timezone.now() + timedelta(seconds=30))
    later = timezone.now() + timedelta(minutes=5)
    monkeypatch.setattr("wallets.holds.timezone.now", lambda: later)
    with pytest.raises(IllegalTransition):
        hold_capture(hold=hold)
    assert _state(funded) == (1000, 100)


def test_expiry_in_the_past_is_refused(funded):
    with pytest.raises(InvalidRequest):
        hold_create(account=funded, amount=100, expires_at=timezone.now() - timedelta(seconds=1))


def test_hold_create_is_idempotent_per_account(funded):
    first = hold_create(account=funded, amount=100, idempotency_key="h1")
    again = hold_create(account=funded, amount=100, idempotency_key="h1")
    assert again.pk == first.pk
    assert _state(funded) == (1000, 100)


def test_hold_create_replay_returns_the_first_hold_even_once_resolved_or_past_its_expiry(funded, monkeypatch):
    expires = timezone.now() + timedelta(minutes=5)
    first = hold_create(account=funded, amount=100, expires_at=expires, idempotency_key="h1")
    hold_void(hold=first)
    later = timezone.now() + timedelta(hours=1)
    monkeypatch.setattr("wallets.holds.timezone.now", lambda: later)
    again = hold_create(account=funded, amount=100, expires_at=expires, idempotency_key="h1")
    assert (again.pk, again.status) == (first.pk, Hold.Status.VOIDED)
    assert _state(funded) == (1000, 0)


@pytest.mark.parametrize(
    "change",
    [
        pytest.param({"amount": 101}, id="amount"),
        pytest.param({"expires_at": timezone.now() + timedelta(days=2)}, id="expiry"),
        pytest.param({"expires_at": None}, id="expiry dropped"),
        pytest.param({"destination": "platform"}, id="destination"),
    ],
)
def test_hold_create_with_the_same_key_but_other_terms_is_a_conflict(funded, change):
    first_terms = {"amount": 100, "expires_at": timezone.now() + timedelta(days=1)}
    first = hold_create(account=funded, idempotency_key="h1", **first_terms)
    terms = {**first_terms, **change}
    if terms.get("destination") == "platform":
        terms["destination"] = account_get_or_create(kind=Account.Kind.PLATFORM, currency="usd")
    with pytest.raises(Conflict):
        hold_create(account=funded, idempotency_key="h1", **terms)
    assert list(Hold.objects.filter(account=funded)) == [first]
    assert _state(funded) == (1000, 100)


def test_expire_task_runs_the_service(funded):
    from wallets.tasks import holds_expire_task

    hold = hold_create(account=funded, amount=100, expires_at=timezone.now() + timedelta(milliseconds=50))
    Hold.objects.filter(pk=hold.pk).update(expires_at=timezone.now() - timedelta(seconds=1))
    assert holds_expire_task.delay().get() == 1
    assert _state(funded) == (1000, 0)
