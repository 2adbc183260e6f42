import threading
from datetime import UTC, timedelta

import pytest
from django.db import connection
from django.utils import timezone

from config.errors import QuotaExceeded
from payments.identity.models import Subscription
from payments.identity.services import month_period, subscription_consume_token, subscriptions_renew
from payments.tests.factories import MerchantFactory

pytestmark = pytest.mark.django_db


def test_tokens_run_out_with_quota_exceeded():
    merchant = MerchantFactory(quota=2)
    subscription_consume_token(merchant=merchant)
    subscription_consume_token(merchant=merchant)
    with pytest.raises(QuotaExceeded):
        subscription_consume_token(merchant=merchant)
    assert Subscription.objects.get(merchant=merchant).tokens_remaining == 0


def test_ended_period_is_renewed_with_a_full_quota():
    merchant = MerchantFactory(quota=3)
    Subscription.objects.filter(merchant=merchant).update(
        tokens_remaining=0, period_end=timezone.now() - timedelta(seconds=1)
    )
    assert subscriptions_renew() == 1
    assert subscriptions_renew() == 0
    sub = Subscription.objects.get(merchant=merchant)
    assert sub.tokens_remaining == 3 and sub.period_end > timezone.now()


def end_the_period(merchant, *, tokens_left=0, ago=timedelta(days=40)):
    """As if the month ended long ago and the renewal task never ran (no beat)."""
    then = timezone.now() - ago
    start, end = month_period(then)
    Subscription.objects.filter(merchant=merchant).update(
        tokens_remaining=tokens_left, period_start=start, period_end=end
    )


def test_consuming_after_the_period_ended_starts_the_new_period_without_the_renewal_task():
    merchant = MerchantFactory(quota=3)
    end_the_period(merchant)
    subscription_consume_token(merchant=merchant)
    sub = Subscription.objects.get(merchant=merchant)
    assert (sub.period_start, sub.period_end) == month_period(timezone.now())
    assert sub.tokens_remaining == 2  # the full quota of the new period, less this one
    subscription_consume_token(merchant=merchant)
    subscription_consume_token(merchant=merchant)
    with pytest.raises(QuotaExceeded):
        subscription_consume_token(merchant=merchant)


def test_leftover_tokens_do_not_carry_into_the_new_period():
    merchant = MerchantFactory(quota=3)
    end_the_period(merchant, tokens_left=2)
    subscription_consume_token(merchant=merchant)
    assert Subscription.objects.get(merchant=merchant).tokens_remaining == 2


def test_zero_quota_plan_stays_refused_across_periods():
    merchant = MerchantFactory(quota=0)
    end_the_period(merchant)
    with pytest.raises(QuotaExceeded):
        subscription_consume_token(merchant=merchant)
    assert Subscription.objects.get(merchant=merchant).period_end < timezone.now()


def test_payment_create_works_in_a_new_month_with_no_beat(merchant_api, merchant):
    end_the_period(merchant)
    body = {"order_id": "new-month", "amount": 1000, "currency": "usd"}
    assert merchant_api.post("/api/v1/payments", body, format="json").status_code == 201


def test_month_period_handles_february_and_december():
    from datetime import datetime

    start, end = month_period(datetime(2028, 2, 29, 13, 0, tzinfo=UTC))
    assert (start.day, end.month, end.day) == (1, 3, 1)
    start, end = month_period(datetime(2026, 12, 31, 23, 59, tzinfo=UTC))
    assert (start.month, end.year, end.month) == (12, 2027, 1)


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_concurrent_consumers_never_take_more_than_the_quota():
    merchant = MerchantFactory(quota=10)
    taken, refused, barrier = [], [], threading.Barrier(8)

    def worker():
        barrier.wait()
        try:
            for _ in range(4):
                try:
                    subscription_consume_token(merchant=merchant)
                    taken.append(1)
                except QuotaExceeded:
                    refused.append(1)
        finally:
            connection.close()

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(taken) == 10 and len(refused) == 22
    assert Subscription.objects.get(merchant=merchant).tokens_remaining == 0


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_concurrent_consumers_at_the_month_boundary_take_exactly_the_new_quota():
    merchant = MerchantFactory(quota=10)
    end_the_period(merchant)
    taken, refused, barrier = [], [], threading.Barrier(8)

    def worker():
        barrier.wait()
        try:
            for _ in range(4):
                try:
                    subscription_consume_token(merchant=merchant)
                    taken.append(1)
                except QuotaExceeded:
                    refused.append(1)
        finally:
            connection.close()

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(taken) == 10 and len(refused) == 22
    sub = Subscription.objects.get(merchant=merchant)
    assert sub.tokens_remaining == 0 and sub.period_end > timezone.now()
