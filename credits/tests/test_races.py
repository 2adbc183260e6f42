"""Real threads against PostgreSQL: locks and constraints, not luck, keep credits exact."""

import json
import threading

import pytest
from django.db import connection, transaction
from django.test import Client

from config.errors import InsufficientCredits
from credits.models import Debit, Grant
from credits.selectors import credit_account_get, credits_balance
from credits.services import credits_debit, credits_grant, credits_revoke
from credits.tests.conftest import run_concurrently
from payments.tests.factories import CustomerFactory
from webhooks.models import InboundEvent
from webhooks.tests.support import signed_post, stripe_event

pytestmark = [pytest.mark.postgres, pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("shards")]


def test_20_concurrent_debits_of_5_on_70(customer):
    credits_grant(customer=customer, units=70, source="merchant")

    def work(i):
        try:
            credits_debit(customer=customer, units=5)
        except InsufficientCredits:
            return "402"

    outcomes = run_concurrently(20, work)
    assert outcomes == {"ok": 14, "402": 6}, outcomes
    assert credit_account_get(customer=customer).balance == 0 == credits_balance(customer=customer)
    assert Debit.objects.count() == 14
    assert sum(Grant.objects.values_list("remaining", flat=True)) == 0


def test_20_concurrent_debits_through_the_api(customer, make_jwt):
    credits_grant(customer=customer, units=70, source="merchant")
    token = make_jwt(customer.pk)

    def work(i):
        response = Client().post(
            "/api/v1/use-credits",
            json.dumps({"units": 5}),
            content_type="application/json",
            HTTP_AUTHORIZATION=f"Bearer {token}",
            secure=True,
        )
        return str(response.status_code)

    outcomes = run_concurrently(20, work)
    assert outcomes == {"200": 14, "402": 6}, outcomes
    assert credits_balance(customer=customer) == 0


def test_checkout_completed_delivered_5_times_concurrently_grants_once(customer, settings):
    settings.STRIPE_WEBHOOK_SECRET = "whsec_race"
    event = stripe_event(
        "checkout.session.completed", event_id="evt_race_1", replace={"REPLACE-WITH-CUSTOMER-UUID": customer.pk}
    )

    def work(i):
        response = signed_post(Client(), "/api/v1/webhooks/stripe", event, secret="whsec_race", secure=True)
        return str(response.status_code)

    outcomes = run_concurrently(5, work)
    assert outcomes == {"200": 5}, outcomes
    assert Grant.objects.count() == 1
    assert credits_balance(customer=customer) == 100
    assert InboundEvent.objects.get(event_id="evt_race_1").status == "processed"


def test_concurrent_grants_for_one_stripe_event_grant_once_by_the_constraint(customer):
    """Bypassing the webhook store's own dedupe (e.g. a staff re-run racing a delivery):
    the partial unique index on the grant's event id still decides."""

    def work(i):
        _, created = credits_grant(customer=customer, units=40, source="stripe_checkout", stripe_event_id="evt_dup")
        return "created" if created else "existing"

    outcomes = run_concurrently(8, work)
    assert outcomes == {"created": 1, "existing": 7}, outcomes
    assert credits_balance(customer=customer) == 40


def test_one_session_delivered_concurrently_under_5_event_ids_grants_once(customer, settings):
    settings.STRIPE_WEBHOOK_SECRET = "whsec_race"
    placeholder = {"REPLACE-WITH-CUSTOMER-UUID": customer.pk}
    events = [stripe_event("checkout.session.completed", event_id=f"evt_cs_{i}", replace=placeholder) for i in range(5)]

    def work(i):
        response = signed_post(Client(), "/api/v1/webhooks/stripe", events[i], secret="whsec_race", secure=True)
        return str(response.status_code)

    outcomes = run_concurrently(5, work)
    assert outcomes == {"200": 5}, outcomes
    assert Grant.objects.count() == 1
    assert credits_balance(customer=customer) == 100
    statuses = sorted(InboundEvent.objects.values_list("status", flat=True))
    assert statuses == ["ignored"] * 4 + ["processed"], statuses
    granted_by = Grant.objects.get().stripe_event_id
    for ignored in InboundEvent.objects.filter(status="ignored"):
        assert f"already granted by event {granted_by}" in ignored.last_error


def test_concurrent_grants_for_one_session_under_different_locks_grant_once_by_the_constraint(merchant):
    """Events naming different customers for one session lock different accounts, so no
    lock orders them: the partial unique index on the grant's session decides."""
    customers = [CustomerFactory(merchant=merchant) for _ in range(6)]

    def work(i):
        _, created = credits_grant(
            customer=customers[i],
            units=40,
            source="stripe_checkout",
            stripe_event_id=f"evt_sess_{i}",
            stripe_object_id="cs_test_one_session",
            stripe_checkout_session="cs_test_one_session",
        )
        return "created" if created else "existing"

    outcomes = run_concurrently(6, work)
    assert outcomes == {"created": 1, "existing": 5}, outcomes
    assert Grant.objects.count() == 1
    assert sum(credits_balance(customer=c) for c in customers) == 40


def test_mixed_grants_debits_and_revokes_across_customers_never_deadlock_or_go_negative(merchant):
    customers = [CustomerFactory(merchant=merchant) for _ in range(3)]
    for c in customers:
        credits_grant(customer=c, units=30, source="merchant")

    def work(i):
        c = customers[i % 3]
        kind = i % 4
        try:
            if kind == 0:
                credits_grant(customer=c, units=3, source="merchant")
            elif kind == 3:
                credits_revoke(customer=c, units=4, reason="test")
            else:
                credits_debit(customer=c, units=7)
        except InsufficientCredits:
            return "402"
        finally:
            connection.close()

    outcomes = run_concurrently(24, work)
    assert set(outcomes) <= {"ok", "402"}, outcomes
    for c in customers:
        account = credit_account_get(customer=c)
        assert account.balance >= 0
        assert sum(Grant.objects.filter(customer=c).values_list("remaining", flat=True)) == account.balance


def test_debits_of_customers_on_different_shards_do_not_wait_for_each_other(merchant):
    """One customer's debit is stuck inside its transaction, holding its credit account
    and its shard of the merchant's consumed account until it commits. Another
    customer's debit and grant must go through meanwhile, without waiting for it (a
    single merchant-wide counter row would make them wait: lock_timeout fails them)."""
    from credits.services import counter_shard

    stuck = CustomerFactory(merchant=merchant)
    others = (CustomerFactory(merchant=merchant) for _ in range(64))
    other = next((c for c in others if counter_shard(c.pk) != counter_shard(stuck.pk)), None)
    assert other is not None, "64 customers all on one shard: there are no shards"
    for c in (stuck, other):
        credits_grant(customer=c, units=10, source="merchant")
    holding, release = threading.Event(), threading.Event()

    def stuck_debit():
        try:
            with transaction.atomic():
                credits_debit(customer=stuck, units=1)
                holding.set()
                release.wait(30)
        finally:
            holding.set()
            connection.close()

    thread = threading.Thread(target=stuck_debit)
    thread.start()
    try:
        assert holding.wait(30)
        with connection.cursor() as cursor:
            cursor.execute("SET lock_timeout = '2s'")
        _, balance = credits_debit(customer=other, units=3)
        credits_grant(customer=other, units=1, source="merchant")
        assert balance == 7
    finally:
        release.set()
        thread.join()
        with connection.cursor() as cursor:
            cursor.execute("SET lock_timeout = 0")
    assert credits_balance(customer=stuck) == 9 and credits_balance(customer=other) == 8
