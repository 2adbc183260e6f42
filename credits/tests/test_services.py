"""Grants, debits, revocations and expiry on the ledger (service level, database)."""

from datetime import timedelta

import pytest
from django.utils import timezone

from config.errors import InsufficientCredits, InvalidRequest
from credits.models import Debit, Grant, Revocation
from credits.selectors import credit_account_get, credits_balance, credits_ledger
from credits.services import credits_debit, credits_expire, credits_grant, credits_revoke
from credits.tests.factories import CreditPackFactory
from payments.tests.factories import CustomerFactory
from webhooks.models import OutboundEvent

pytestmark = pytest.mark.django_db


def grant(customer, units, **kwargs):
    kwargs.setdefault("source", Grant.Source.MERCHANT)
    return credits_grant(customer=customer, units=units, **kwargs)[0]


def test_grant_moves_units_from_issuance_onto_the_customer_account(customer):
    g = grant(customer, 100, reason="welcome")
    account = credit_account_get(customer=customer)
    assert account.kind == "credits" and account.currency == "credits" and not account.allow_negative
    assert account.balance == 100 == credits_balance(customer=customer)
    legs = sorted((e.account.name, e.amount) for e in g.transfer.entries.select_related("account"))
    assert legs == [("", 100), ("issuance", -100)]
    event = OutboundEvent.objects.get(type="credits.granted")
    assert event.data["units"] == 100 and event.data["balance"] == 100 and event.data["customer"] == str(customer.pk)


def test_grant_with_a_stripe_event_id_happens_once(customer):
    first, created = credits_grant(customer=customer, units=50, source="stripe_checkout", stripe_event_id="evt_1")
    again, created_again = credits_grant(customer=customer, units=50, source="stripe_checkout", stripe_event_id="evt_1")
    assert created and not created_again and again.pk == first.pk
    assert credits_balance(customer=customer) == 50
    assert OutboundEvent.objects.filter(type="credits.granted").count() == 1


def test_manual_grants_have_no_event_id_and_are_not_deduplicated(customer):
    grant(customer, 5)
    grant(customer, 5)
    assert Grant.objects.filter(customer=customer, stripe_event_id__isnull=True).count() == 2
    assert credits_balance(customer=customer) == 10


@pytest.mark.parametrize("units", [0, -1, 1.5, "3", True])
def test_grant_refuses_what_is_not_a_positive_integer(customer, units):
    with pytest.raises(InvalidRequest):
        credits_grant(customer=customer, units=units, source="merchant")


def test_debit_spends_and_emits(customer):
    grant(customer, 70)
    debit, balance = credits_debit(customer=customer, units=5, reason="api call", ref="req-1")
    assert balance == 65 == credits_balance(customer=customer)
    assert debit.units == 5 and debit.ref == "req-1"
    event = OutboundEvent.objects.get(type="credits.debited")
    assert event.data["balance"] == 65 and event.data["units"] == 5


def test_debit_beyond_the_balance_changes_nothing(customer):
    grant(customer, 4)
    with pytest.raises(InsufficientCredits):
        credits_debit(customer=customer, units=5)
    assert credits_balance(customer=customer) == 4
    assert not Debit.objects.exists()
    assert not OutboundEvent.objects.filter(type="credits.debited").exists()
    assert Grant.objects.get().remaining == 4


def test_debit_of_a_customer_without_credits_is_402(customer):
    with pytest.raises(InsufficientCredits):
        credits_debit(customer=customer, units=1)


def test_consumption_is_soonest_expiring_first_then_oldest(customer):
    forever = grant(customer, 10)
    soon = grant(customer, 10, expires_at=timezone.now() + timedelta(days=1))
    later = grant(customer, 10, expires_at=timezone.now() + timedelta(days=9))
    credits_debit(customer=customer, units=15)
    remaining = {g.pk: g.remaining for g in Grant.objects.all()}
    assert remaining == {soon.pk: 0, later.pk: 5, forever.pk: 10}


def test_pack_expiry_sets_expires_at(customer):
    pack = CreditPackFactory(merchant=customer.merchant, expires_in_days=30)
    g = grant(customer, 100, pack=pack)
    assert timedelta(days=29, hours=23) < g.expires_at - timezone.now() <= timedelta(days=30)


def _expire_now(g):
    Grant.objects.filter(pk=g.pk).update(expires_at=timezone.now() - timedelta(seconds=1))


def test_expired_grants_stop_counting_before_the_task_runs(customer):
    grant(customer, 10)
    old = grant(customer, 30, expires_at=timezone.now() + timedelta(days=1))
    credits_debit(customer=customer, units=5)  # from the expiring grant
    _expire_now(old)
    assert credits_balance(customer=customer) == 10
    with pytest.raises(InsufficientCredits):
        credits_debit(customer=customer, units=11)
    _, balance = credits_debit(customer=customer, units=10)
    assert balance == 0


def test_expiry_task_posts_to_the_ledger_once(customer):
    other = CustomerFactory(merchant=customer.merchant)
    keep = grant(customer, 10)
    old = grant(customer, 30, expires_at=timezone.now() + timedelta(days=1))
    old_other = grant(other, 7, expires_at=timezone.now() + timedelta(days=1))
    credits_debit(customer=customer, units=4)
    _expire_now(old)
    _expire_now(old_other)
    assert credits_expire() == 26 + 7
    assert credits_expire() == 0
    account = credit_account_get(customer=customer)
    assert account.balance == 10 == credits_balance(customer=customer)
    old.refresh_from_db()
    assert (old.remaining, old.expired_units) == (0, 26) and old.expiry_transfer is not None
    assert Grant.objects.get(pk=keep.pk).remaining == 10
    assert credits_ledger(customer=customer).first().amount == -26
    assert credit_account_get(customer=other).balance == 0


def test_revoke_takes_back_down_to_what_is_left_and_records_the_shortfall(customer):
    g = grant(customer, 100)
    credits_debit(customer=customer, units=80)
    revocation = credits_revoke(customer=customer, units=100, reason="chargeback", grant=g)
    assert (revocation.requested, revocation.revoked, revocation.shortfall) == (100, 20, 80)
    assert credits_balance(customer=customer) == 0
    assert OutboundEvent.objects.get(type="credits.revoked").data["shortfall"] == 80
    again = credits_revoke(customer=customer, units=5, reason="again")
    assert (again.revoked, again.shortfall, again.transfer) == (0, 5, None)
    assert credit_account_get(customer=customer).balance == 0


def test_revoke_of_a_grant_takes_that_grant_first(customer):
    first = grant(customer, 10)
    second = grant(customer, 10)
    credits_revoke(customer=customer, units=6, reason="wrong pack", grant=second)
    assert Grant.objects.get(pk=second.pk).remaining == 4
    assert Grant.objects.get(pk=first.pk).remaining == 10


def test_revoke_needs_a_reason(customer):
    grant(customer, 10)
    with pytest.raises(InvalidRequest):
        credits_revoke(customer=customer, units=1, reason="  ")
    assert not Revocation.objects.exists()


def test_live_grants_always_sum_to_the_balance(customer):
    grant(customer, 50, expires_at=timezone.now() + timedelta(days=2))
    g = grant(customer, 20)
    credits_debit(customer=customer, units=30)
    credits_revoke(customer=customer, units=5, reason="x", grant=g)
    credits_debit(customer=customer, units=7)
    live = sum(Grant.objects.values_list("remaining", flat=True))
    assert live == credit_account_get(customer=customer).balance == 28
