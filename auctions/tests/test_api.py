"""The Auctions endpoints as API.md fixes them: shapes, status codes, who may do what."""

from datetime import timedelta

import pytest
from django.utils import timezone

from auctions.models import Auction, Bid
from auctions.tests.factories import end_now
from payments.tests.factories import CustomerFactory, MerchantFactory
from wallets.models import Account, Hold
from wallets.tests.factories import WalletFactory
from webhooks.models import OutboundEvent

pytestmark = pytest.mark.django_db


def in_(minutes: int) -> str:
    return (timezone.now() + timedelta(minutes=minutes)).isoformat()


@pytest.fixture
def create(merchant_api):
    def make(**body):
        body = {"title": "Vintage lamp", "currency": "usd", "ends_at": in_(60), **body}
        response = merchant_api.post("/api/v1/auctions", body, format="json")
        assert response.status_code == 201, response.json()
        return response.json()

    return make


@pytest.fixture
def funded(merchant):
    def make(balance=10_000, currency="usd"):
        return WalletFactory(customer=CustomerFactory(merchant=merchant), balance=balance, currency=currency).customer

    return make


def bid(client, auction_id, amount, customer=None, **headers):
    body = {"amount": amount} | ({"customer": str(customer.pk)} if customer is not None else {})
    return client.post(f"/api/v1/auctions/{auction_id}/bids", body, format="json", **headers)


def test_create_answers_201_open_with_no_highest_bid(merchant_api, merchant):
    seller = CustomerFactory(merchant=merchant)
    response = merchant_api.post(
        "/api/v1/auctions",
        {
            "title": "Vintage lamp",
            "currency": "USD",
            "reserve_price": 5_000,
            "min_increment": 100,
            "ends_at": in_(60),
            "seller": str(seller.pk),
        },
        format="json",
    )

    assert response.status_code == 201
    body = response.json()
    assert body["status"] == "open" and body["highest_bid"] is None
    assert (body["currency"], body["reserve_price"], body["min_increment"], body["minimum_bid"]) == (
        "usd",
        5_000,
        100,
        100,
    )
    assert body["seller"] == str(seller.pk) and body["bids"] == [] and body["winner"] is None
    assert Auction.objects.get(pk=body["id"]).merchant_id == merchant.pk


@pytest.mark.parametrize(
    "body, param",
    [
        ({"currency": "usd", "ends_at": "2099-01-01T00:00:00Z"}, "title"),
        ({"title": "x", "currency": "usd"}, "ends_at"),
        ({"title": "x", "currency": "usd", "ends_at": "2000-01-01T00:00:00Z"}, "ends_at"),
        ({"title": "x", "currency": "zzz", "ends_at": "2099-01-01T00:00:00Z"}, "currency"),
        ({"title": "x", "currency": "usd", "ends_at": "2099-01-01T00:00:00Z", "reserve_price": 10.5}, "reserve_price"),
        ({"title": "x", "currency": "usd", "ends_at": "2099-01-01T00:00:00Z", "min_increment": 0}, "min_increment"),
        ({"title": "x", "currency": "usd", "ends_at": "2099-01-01T00:00:00Z", "seller": 12}, "seller"),
    ],
)
def test_create_refuses_a_bad_field_with_400_naming_it(merchant_api, body, param):
    response = merchant_api.post("/api/v1/auctions", body, format="json")
    assert response.status_code == 400
    assert response.json()["error"]["param"] == param
    assert not Auction.objects.exists()


def test_create_with_another_merchants_customer_as_seller_is_404(merchant_api):
    stranger = CustomerFactory()
    response = merchant_api.post(
        "/api/v1/auctions",
        {"title": "x", "currency": "usd", "ends_at": in_(5), "seller": str(stranger.pk)},
        format="json",
    )
    assert response.status_code == 404 and response.json()["error"]["param"] == "seller"


def test_create_is_idempotent(merchant_api):
    body = {"title": "Vintage lamp", "currency": "usd", "ends_at": in_(60)}
    first = merchant_api.post("/api/v1/auctions", body, format="json", HTTP_IDEMPOTENCY_KEY="a-1")
    again = merchant_api.post("/api/v1/auctions", body, format="json", HTTP_IDEMPOTENCY_KEY="a-1")
    assert first.status_code == again.status_code == 201
    assert again.json() == first.json() and again.headers["Idempotent-Replayed"] == "true"
    assert Auction.objects.count() == 1


def test_an_end_user_cannot_create_cancel_or_finalize(jwt_client, create, funded):
    auction = create()
    client = jwt_client(funded())
    body = {"title": "x", "currency": "usd", "ends_at": in_(5)}
    assert client.post("/api/v1/auctions", body, format="json").status_code == 403
    assert client.post(f"/api/v1/auctions/{auction['id']}/cancel").status_code == 403
    assert client.post(f"/api/v1/auctions/{auction['id']}/finalize").status_code == 403
    assert client.get(f"/api/v1/auctions/{auction['id']}/timeline").status_code == 403


def test_a_merchant_bid_answers_201_and_holds_the_amount(merchant_api, create, funded):
    auction = create()
    bidder = funded(10_000)

    response = bid(merchant_api, auction["id"], 2_500, bidder)

    assert response.status_code == 201
    body = response.json()
    assert (body["auction"], body["bidder"], body["amount"], body["currency"], body["status"]) == (
        auction["id"],
        str(bidder.pk),
        2_500,
        "usd",
        "active",
    )
    assert Hold.objects.get(pk=body["hold"]).status == "pending"
    wallet = merchant_api.get(f"/api/v1/wallets/{bidder.pk}").json()
    assert (wallet["balance"], wallet["available"], wallet["held"]) == (10_000, 7_500, 2_500)


def test_an_end_user_bids_as_itself_without_customer(jwt_client, create, funded):
    auction = create()
    bidder = funded()
    response = bid(jwt_client(bidder), auction["id"], 300)
    assert response.status_code == 201 and response.json()["bidder"] == str(bidder.pk)


def test_an_end_user_naming_another_customer_is_404(jwt_client, create, funded):
    auction = create()
    response = bid(jwt_client(funded()), auction["id"], 300, funded())
    assert response.status_code == 404 and response.json()["error"]["param"] == "customer"
    assert not Bid.objects.exists()


def test_a_merchant_bid_needs_customer(merchant_api, create):
    response = bid(merchant_api, create()["id"], 300)
    assert response.status_code == 400 and response.json()["error"]["param"] == "customer"


def test_an_unfunded_bid_is_402_insufficient_funds_and_changes_nothing(merchant_api, create, funded):
    auction = create()
    poor = funded(100)
    response = bid(merchant_api, auction["id"], 500, poor)
    assert response.status_code == 402
    assert response.json()["error"]["code"] == "insufficient_funds"
    assert response.json()["error"]["type"] == "payment_error"
    assert not Hold.objects.exists()


def test_a_bidder_without_a_wallet_in_the_auctions_currency_is_402(merchant_api, create, funded):
    auction = create(currency="eur")
    response = bid(merchant_api, auction["id"], 500, funded(10_000, currency="usd"))
    assert response.status_code == 402 and "no eur wallet" in response.json()["error"]["message"]


def test_a_bid_that_does_not_beat_the_highest_is_409(merchant_api, create, funded):
    auction = create(min_increment=100)
    assert bid(merchant_api, auction["id"], 1_000, funded()).status_code == 201
    response = bid(merchant_api, auction["id"], 1_099, funded())
    assert response.status_code == 409 and response.json()["error"]["type"] == "conflict"
    assert "1100" in response.json()["error"]["message"]


def test_a_bid_on_an_ended_or_canceled_auction_is_409(merchant_api, create, funded):
    ended, canceled = create(), create()
    end_now(Auction.objects.get(pk=ended["id"]))
    assert merchant_api.post(f"/api/v1/auctions/{canceled['id']}/cancel").status_code == 200
    for auction in (ended, canceled):
        assert bid(merchant_api, auction["id"], 100, funded()).status_code == 409


def test_a_bid_replayed_with_its_key_holds_once(merchant_api, create, funded):
    auction = create()
    bidder = funded()
    first = bid(merchant_api, auction["id"], 700, bidder, HTTP_IDEMPOTENCY_KEY="bid-7")
    again = bid(merchant_api, auction["id"], 700, bidder, HTTP_IDEMPOTENCY_KEY="bid-7")
    assert first.status_code == again.status_code == 201 and again.json() == first.json()
    assert again.headers["Idempotent-Replayed"] == "true"
    assert Hold.objects.filter(status="pending").count() == 1
    refused = bid(merchant_api, auction["id"], 50, funded(), HTTP_IDEMPOTENCY_KEY="bid-8")
    assert refused.status_code == 409
    replay = bid(merchant_api, auction["id"], 50, Bid.objects.get().bidder, HTTP_IDEMPOTENCY_KEY="bid-8")
    assert replay.status_code == 400 and replay.json()["error"]["type"] == "idempotency_error"


def test_show_lists_the_bids_highest_first_and_list_is_paginated(merchant_api, create, funded):
    auction = create()
    a, b = funded(), funded()
    for bidder, amount in [(a, 100), (b, 200), (a, 300)]:
        assert bid(merchant_api, auction["id"], amount, bidder).status_code == 201
    create(title="Second lot")

    shown = merchant_api.get(f"/api/v1/auctions/{auction['id']}").json()

    assert [(x["amount"], x["status"]) for x in shown["bids"]] == [(300, "active"), (200, "active"), (100, "replaced")]
    assert shown["highest_bid"]["amount"] == 300 and shown["minimum_bid"] == 301 and shown["bid_count"] == 3
    listed = merchant_api.get("/api/v1/auctions?limit=1").json()
    assert listed["count"] == 2 and len(listed["results"]) == 1 and listed["next"] is not None
    assert merchant_api.get("/api/v1/auctions?status=canceled").json()["count"] == 0


def test_an_end_user_sees_the_bids_but_only_its_own_bidder_and_hold(merchant_api, jwt_client, create, funded):
    auction = create()
    me, other = funded(), funded()
    bid(merchant_api, auction["id"], 100, me)
    bid(merchant_api, auction["id"], 200, other)

    shown = jwt_client(me).get(f"/api/v1/auctions/{auction['id']}").json()

    assert [(x["amount"], x["bidder"], x["hold"] is not None) for x in shown["bids"]] == [
        (200, None, False),
        (100, str(me.pk), True),
    ]
    assert shown["highest_bid"]["bidder"] is None
    assert jwt_client(me).get("/api/v1/auctions").json()["count"] == 1


def test_another_merchants_auction_is_404(client_for, create, funded, jwt_client):
    auction = create()
    stranger = client_for(MerchantFactory())
    assert stranger.get(f"/api/v1/auctions/{auction['id']}").status_code == 404
    assert stranger.post(f"/api/v1/auctions/{auction['id']}/cancel").status_code == 404
    assert stranger.get("/api/v1/auctions").json()["count"] == 0
    outsider = WalletFactory(customer=CustomerFactory(), balance=1_000).customer
    assert bid(jwt_client(outsider), auction["id"], 100).status_code == 404


def test_finalize_before_the_end_is_409_and_after_it_settles_once(merchant_api, create, funded, merchant):
    seller = CustomerFactory(merchant=merchant)
    auction = create(seller=str(seller.pk))
    winner = funded()
    bid(merchant_api, auction["id"], 4_000, winner)
    assert merchant_api.post(f"/api/v1/auctions/{auction['id']}/finalize").status_code == 409
    end_now(Auction.objects.get(pk=auction["id"]))

    done = merchant_api.post(f"/api/v1/auctions/{auction['id']}/finalize")
    again = merchant_api.post(f"/api/v1/auctions/{auction['id']}/finalize")

    assert done.status_code == again.status_code == 200
    assert done.json()["status"] == "settled" and done.json()["winner"] == str(winner.pk)
    assert done.json()["minimum_bid"] is None and done.json()["bids"][0]["status"] == "won"
    assert again.json() == done.json()
    assert merchant_api.get(f"/api/v1/wallets/{seller.pk}").json()["balance"] == 4_000
    assert OutboundEvent.objects.filter(type="auction.settled").count() == 1
    timeline = merchant_api.get(f"/api/v1/auctions/{auction['id']}/timeline").json()
    assert [(e["type"], e["status"]) for e in timeline["events"]] == [
        ("auction.created", "open"),
        ("bid.placed", None),
        ("auction.settled", "settled"),
    ]


def test_cancel_voids_every_hold_and_a_second_cancel_is_409(merchant_api, create, funded):
    auction = create()
    bidder = funded()
    bid(merchant_api, auction["id"], 900, bidder)

    response = merchant_api.post(f"/api/v1/auctions/{auction['id']}/cancel")

    assert response.status_code == 200 and response.json()["status"] == "canceled"
    assert [b["status"] for b in response.json()["bids"]] == ["canceled"]
    assert Account.objects.get(customer=bidder).held == 0
    assert merchant_api.post(f"/api/v1/auctions/{auction['id']}/cancel").status_code == 409


def test_auctions_are_in_the_openapi_schema(api):
    paths = api.get("/api/schema/?format=json").json()["paths"]
    assert {"/api/v1/auctions", "/api/v1/auctions/{auction_id}/bids", "/api/v1/auctions/{auction_id}/finalize"} <= set(
        paths
    )
