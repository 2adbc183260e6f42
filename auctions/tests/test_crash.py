"""Exactly once after a crash (config/api/idempotency.py's policy): an auction's bid,
finalize and cancel are database-only requests, so the effect and the key's completion
commit together. Each case dies at a fault point with an Idempotency-Key, the client
retries once the lease passed, and the ledger, the bids and the outbox show one effect."""

import pytest

from auctions.models import Auction, Bid
from auctions.services import bid_place
from auctions.tests.factories import end_now, make_auction
from config.tests.test_crash_exactly_once import ATOMIC, crash_then_retry
from payments.tests.factories import CustomerFactory
from wallets.models import Account, Hold
from wallets.tests.factories import WalletFactory
from webhooks.models import OutboundEvent

pytestmark = [pytest.mark.postgres, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def lot(merchant):
    return make_auction(merchant=merchant, seller=CustomerFactory(merchant=merchant))


@pytest.fixture
def bidder(merchant):
    return WalletFactory(customer=CustomerFactory(merchant=merchant), balance=1_000)


@pytest.mark.parametrize("point", ATOMIC)
def test_a_raise_replaces_the_earlier_hold_once(merchant_api, lot, bidder, point):
    earlier = bid_place(auction=lot, bidder=bidder.customer, amount=300)
    body = {"customer": str(bidder.customer_id), "amount": 800}

    r = crash_then_retry(merchant_api, f"/api/v1/auctions/{lot.pk}/bids", body, point)

    assert r.status_code == 201, r.content
    active = Bid.objects.get(auction=lot, status="active")
    assert active.amount == 800 and active.replaces_id == earlier.pk and Bid.objects.count() == 2
    assert Hold.objects.filter(account=bidder, status="pending").get().pk == active.hold_id
    assert Account.objects.get(pk=bidder.pk).held == 800


@pytest.mark.parametrize("point", ATOMIC)
def test_finalize_settles_once(merchant_api, lot, bidder, merchant, point):
    other = WalletFactory(customer=CustomerFactory(merchant=merchant), balance=1_000)
    bid_place(auction=lot, bidder=other.customer, amount=200)
    bid_place(auction=lot, bidder=bidder.customer, amount=600)
    end_now(lot)

    r = crash_then_retry(merchant_api, f"/api/v1/auctions/{lot.pk}/finalize", {}, point)

    assert r.status_code == 200, r.content
    assert r.json()["status"] == "settled"
    assert OutboundEvent.objects.filter(type="auction.settled").count() == 1
    assert Account.objects.get(pk=lot.proceeds_account_id).balance == 600
    assert (Account.objects.get(pk=bidder.pk).balance, Account.objects.get(pk=other.pk).held) == (400, 0)


@pytest.mark.parametrize("point", ATOMIC)
def test_cancel_voids_once(merchant_api, lot, bidder, point):
    bid_place(auction=lot, bidder=bidder.customer, amount=500)

    r = crash_then_retry(merchant_api, f"/api/v1/auctions/{lot.pk}/cancel", {}, point)

    assert r.status_code == 200, r.content
    assert Auction.objects.get(pk=lot.pk).status == "canceled"
    assert OutboundEvent.objects.filter(type="auction.canceled").count() == 1
    assert Account.objects.get(pk=bidder.pk).held == 0
