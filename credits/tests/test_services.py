"""Grants, debits, revocations and expiry on the ledger (service level, database)."""

from datetime import timedelta

import pytest
from django.utils import timezone

from config.errors import InsufficientCredits, InvalidRequest
from credits.models import Debit, Grant, Revocation
from credits.selectors import credit_account_get, credits_balance, credits_counters, credits_ledger
from credits.services import (
    COUNTER_SHARDS,
    counter_shard,
    credits_debit,
    credits_expire,
    credits_grant,
    credits_revoke,
    credits_revoke_refunded,
)
from credits.tests.factories import CreditPackFactory
from payments.tests.factories import CustomerFactory
from wallets.models import Account
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
    assert legs == [("", 100), (f"issuance.{counter_shard(customer.pk):02d}", -100)]
    assert credits_counters(merchant=customer.merchant) == {"issued": 100, "consumed": 0, "expired": 0}
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


def test_consumption_is_oldest_grant_first_whatever_expires_sooner(customer):
    oldest = grant(customer, 10)
    soon = grant(customer, 10, expires_at=timezone.now() + timedelta(days=1))
    later = grant(customer, 10, expires_at=timezone.now() + timedelta(days=9))
    credits_debit(customer=customer, units=15)
    remaining = {g.pk: g.remaining for g in Grant.objects.all()}
    assert remaining == {oldest.pk: 0, soon.pk: 5, later.pk: 10}


def test_pack_expiry_sets_expires_at(customer):
    pack = CreditPackFactory(merchant=customer.merchant, expires_in_days=30)
    g = grant(customer, 100, pack=pack)
    assert timedelta(days=29, hours=23) < g.expires_at - timezone.now() <= timedelta(days=30)


def _expire_now(g):
    Grant.objects.filter(pk=g.pk).update(expires_at=timezone.now() - timedelta(seconds=1))


def test_expired_grants_stop_counting_before_the_task_runs(customer):
    old = grant(customer, 30, expires_at=timezone.now() + timedelta(days=1))
    grant(customer, 10)
    credits_debit(customer=customer, units=5)  # from the oldest grant, the expiring one
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
    assert credits_expire() == 30 + 7  # the debit was taken from the older grant
    assert credits_expire() == 0
    account = credit_account_get(customer=customer)
    assert account.balance == 6 == credits_balance(customer=customer)
    old.refresh_from_db()
    assert (old.remaining, old.expired_units) == (0, 30) and old.expiry_transfer is not None
    assert Grant.objects.get(pk=keep.pk).remaining == 6
    assert credits_ledger(customer=customer).first().amount == -30
    assert credit_account_get(customer=other).balance == 0
    counters = credits_counters(merchant=customer.merchant)
    assert counters == {"issued": 47, "consumed": 4, "expired": 37}


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


def test_consumption_reads_grants_page_after_page_and_a_revoked_grant_first(customer, monkeypatch):
    from credits import accounts

    monkeypatch.setattr(accounts, "GRANTS_PAGE", 2)  # five grants: three pages
    grants = [grant(customer, 3) for _ in range(5)]
    credits_debit(customer=customer, units=8)  # oldest first, across three pages
    assert [Grant.objects.get(pk=g.pk).remaining for g in grants] == [0, 0, 1, 3, 3]
    credits_revoke(customer=customer, units=5, reason="wrong pack", grant=grants[3])  # its 3, then 1 and 1
    assert [Grant.objects.get(pk=g.pk).remaining for g in grants] == [0, 0, 0, 0, 2]
    assert credit_account_get(customer=customer).balance == 2


def test_a_debit_posts_due_expiries_whether_the_live_grants_fit_on_a_page_or_not(customer, monkeypatch):
    """A debit reads the live grants once when they fit on a page and finds the due ones
    among them; with a page or more it asks for the due ones and pages through the rest."""
    from credits import accounts

    for page in (100, 2):  # three live grants: one page, then two
        monkeypatch.setattr(accounts, "GRANTS_PAGE", page)
        first, second, third = (grant(customer, 3, expires_at=timezone.now() + timedelta(days=1)) for _ in range(3))
        _expire_now(second)
        _, balance = credits_debit(customer=customer, units=4)
        assert balance == 2
        assert [Grant.objects.get(pk=g.pk).remaining for g in (first, second, third)] == [0, 0, 2]
        assert Grant.objects.get(pk=second.pk).expired_units == 3
        credits_debit(customer=customer, units=2)
    assert credits_counters(merchant=customer.merchant) == {"issued": 18, "consumed": 12, "expired": 6}
    assert credit_account_get(customer=customer).balance == 0


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


def test_a_refund_after_partial_expiry_takes_nothing_from_newer_grants(customer):
    bought = grant(
        customer,
        100,
        source="stripe_checkout",
        stripe_event_id="evt_buy_1",
        expires_at=timezone.now() + timedelta(days=1),
    )
    credits_debit(customer=customer, units=40)  # from the purchase
    _expire_now(bought)
    credits_expire()  # the other 60 of it lapse
    newer = grant(customer, 100)
    revocation = credits_revoke_refunded(grant=bought, refunded_units=100, stripe_event_id="evt_refund_1")
    assert (revocation.requested, revocation.revoked, revocation.shortfall) == (100, 0, 100)
    assert credits_balance(customer=customer) == 100
    assert Grant.objects.get(pk=newer.pk).remaining == 100


def test_a_refund_revokes_what_is_left_of_that_grant_only(customer):
    bought = grant(customer, 100, source="stripe_checkout", stripe_event_id="evt_buy_1")
    newer = grant(customer, 50)
    credits_debit(customer=customer, units=70)  # 70 of the purchase spent
    partial = credits_revoke_refunded(grant=bought, refunded_units=20, stripe_event_id="evt_refund_1")
    assert (partial.revoked, partial.shortfall) == (20, 0)
    full = credits_revoke_refunded(grant=bought, refunded_units=100, stripe_event_id="evt_refund_2")
    assert (full.requested, full.revoked, full.shortfall) == (80, 10, 70)
    assert Grant.objects.get(pk=newer.pk).remaining == 50 == credits_balance(customer=customer)


def test_customers_are_spread_over_counter_account_shards(merchant):
    customers = [CustomerFactory(merchant=merchant) for _ in range(40)]
    for c in customers:
        grant(c, 5)
        credits_debit(customer=c, units=2)
    names = set(
        Account.objects.filter(merchant=merchant, customer__isnull=True, currency="credits").values_list(
            "name", flat=True
        )
    )
    shards = {counter_shard(c.pk) for c in customers}
    assert len(shards) > 1 and all(0 <= s < COUNTER_SHARDS for s in shards)
    assert names == {f"{counter}.{s:02d}" for counter in ("issuance", "consumed", "expired") for s in shards}
    assert credits_counters(merchant=merchant) == {"issued": 200, "consumed": 80, "expired": 0}


def test_the_session_backfill_names_only_the_first_grant_of_each_session(customer):
    """Migration 0004 on grants made before it: duplicates of one session (the bug it fixes)
    must not stop the unique index from being created."""
    import importlib

    from django.apps import apps

    migration = importlib.import_module("credits.migrations.0004_grant_stripe_checkout_session")
    first, again, other = (
        grant(customer, 10, source=Grant.Source.STRIPE_CHECKOUT, stripe_event_id=event_id, stripe_object_id=session)
        for event_id, session in [("evt_1", "cs_one"), ("evt_2", "cs_one"), ("evt_3", "cs_two")]
    )
    manual = grant(customer, 5)
    migration.backfill_sessions(apps, None)
    sessions = dict(Grant.objects.values_list("pk", "stripe_checkout_session"))
    assert sessions == {first.pk: "cs_one", again.pk: None, other.pk: "cs_two", manual.pk: None}
