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
    with pytest.raises(QuotaExceeded):
        subscription_consume_token(merchant=merchant)
    assert subscriptions_renew() == 1
    assert subscriptions_renew() == 0
    sub = Subscription.objects.get(merchant=merchant)
    assert sub.tokens_remaining == 3 and sub.period_end > timezone.now()


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
