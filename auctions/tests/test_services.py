"""The auction services against the database: bids as holds, replacement, finalize
(settled, unsold), cancel, and what each leaves on the ledger and in the outbox."""

from datetime import timedelta

import pytest
from django.utils import timezone

from auctions.models import Auction, AuctionEvent, Bid
from auctions.services import auction_cancel, auction_create, auction_finalize, auctions_finalize, bid_place
from auctions.tests.factories import end_now, make_auction
from config.errors import Conflict, IllegalTransition, InsufficientFunds, InvalidRequest
from payments.tests.factories import CustomerFactory
from wallets.models import Account, Hold
from wallets.services import merchant_balance_account
from wallets.tests.factories import WalletFactory
from webhooks.models import OutboundEvent

pytestmark = pytest.mark.django_db


@pytest.fixture
def seller(merchant):
    return CustomerFactory(merchant=merchant)


def bidder_with(merchant, balance, currency="usd"):
    wallet = WalletFactory(customer=CustomerFactory(merchant=merchant), balance=balance, currency=currency)
    return wallet.customer, wallet


def wallet_of(wallet) -> Account:
    return Account.objects.get(pk=wallet.pk)


def auction_events(type_=None):
    qs = OutboundEvent.objects.filter(type__startswith="auction.").order_by("created_at")
    return list(qs.filter(type=type_) if type_ else qs)


# --- Create ----------------------------------------------------------------------------


def test_create_opens_the_auction_with_no_bid_and_the_seller_wallet_as_proceeds(merchant, seller):
    auction = make_auction(merchant=merchant, seller=seller, reserve_price=500, min_increment=50)

    assert (auction.status, auction.highest_bid, auction.bid_count) == ("open", None, 0)
    wallet = Account.objects.get(kind="customer_wallet", customer=seller, currency="usd")
    assert auction.proceeds_account_id == wallet.pk  # opened for the proceeds
    assert [e.type for e in auction.timeline.all()] == ["auction.created"]


def test_without_a_seller_the_proceeds_go_to_the_merchant_balance(merchant):
    auction = make_auction(merchant=merchant)
    assert auction.proceeds_account_id == merchant_balance_account(merchant=merchant, currency="usd").pk


def test_create_refuses_an_end_in_the_past_or_before_the_start(merchant):
    with pytest.raises(InvalidRequest) as exc:
        make_auction(merchant=merchant, minutes=-1)
    assert exc.value.param == "ends_at"
    with pytest.raises(InvalidRequest):
        make_auction(merchant=merchant, minutes=10, starts_at=timezone.now() + timedelta(minutes=20))
    assert not Auction.objects.exists()


def test_create_is_idempotent_on_its_key(merchant):
    first = make_auction(merchant=merchant, idempotency_key="k1")
    again = make_auction(merchant=merchant, idempotency_key="k1")
    assert again.pk == first.pk and Auction.objects.count() == 1
    with pytest.raises(Conflict):
        make_auction(merchant=merchant, idempotency_key="k1", title="Another lot")


# --- Bids ------------------------------------------------------------------------------


def test_a_bid_is_a_hold_on_the_bidders_wallet_owned_by_the_auction(merchant, seller):
    auction = make_auction(merchant=merchant, seller=seller)
    bidder, wallet = bidder_with(merchant, 1_000)

    bid = bid_place(auction=auction, bidder=bidder, amount=300)

    assert (bid.status, bid.sequence, bid.amount) == ("active", 1, 300)
    hold = Hold.objects.get(pk=bid.hold_id)
    assert (hold.status, hold.amount, hold.account_id, hold.destination_id) == (
        "pending",
        300,
        wallet.pk,
        auction.proceeds_account_id,
    )
    assert hold.owner == f"auction:{auction.pk}" and hold.expires_at is None
    assert (wallet_of(wallet).balance, wallet_of(wallet).available) == (1_000, 700)
    auction.refresh_from_db()
    assert auction.highest_bid_id == bid.pk and auction.bid_count == 1


def test_a_higher_bid_replaces_the_bidders_earlier_hold_in_one_go(merchant):
    auction = make_auction(merchant=merchant)
    bidder, wallet = bidder_with(merchant, 1_000)
    first = bid_place(auction=auction, bidder=bidder, amount=300)

    # 1000 available counting the first hold's 300: the replacement may take all of it.
    second = bid_place(auction=auction, bidder=bidder, amount=1_000)

    first.refresh_from_db()
    assert first.status == "replaced" and Hold.objects.get(pk=first.hold_id).status == "voided"
    assert second.replaces_id == first.pk and Hold.objects.get(pk=second.hold_id).status == "pending"
    assert Hold.objects.filter(account=wallet, status="pending").count() == 1
    assert wallet_of(wallet).held == 1_000 and wallet_of(wallet).available == 0


def test_a_replacement_the_wallet_cannot_hold_is_402_and_keeps_the_earlier_bid(merchant):
    auction = make_auction(merchant=merchant)
    bidder, wallet = bidder_with(merchant, 500)
    first = bid_place(auction=auction, bidder=bidder, amount=300)

    with pytest.raises(InsufficientFunds):
        bid_place(auction=auction, bidder=bidder, amount=501)

    first.refresh_from_db()
    assert first.status == "active" and Hold.objects.get(pk=first.hold_id).status == "pending"
    assert Bid.objects.count() == 1 and wallet_of(wallet).held == 300
    auction.refresh_from_db()
    assert auction.highest_bid_id == first.pk and auction.bid_count == 1


def test_a_bidder_without_a_wallet_in_the_currency_is_402(merchant):
    auction = make_auction(merchant=merchant, currency="eur")
    bidder, _ = bidder_with(merchant, 1_000, currency="usd")
    with pytest.raises(InsufficientFunds, match="no eur wallet"):
        bid_place(auction=auction, bidder=bidder, amount=100)
    assert not Bid.objects.exists() and not Hold.objects.exists()


def test_a_bid_must_beat_the_highest_by_the_increment(merchant):
    auction = make_auction(merchant=merchant, min_increment=100)
    a, _ = bidder_with(merchant, 10_000)
    b, b_wallet = bidder_with(merchant, 10_000)

    with pytest.raises(Conflict):
        bid_place(auction=auction, bidder=a, amount=99)  # the first bid: at least the increment
    bid_place(auction=auction, bidder=a, amount=100)
    with pytest.raises(Conflict):
        bid_place(auction=auction, bidder=b, amount=199)
    with pytest.raises(Conflict):
        bid_place(auction=auction, bidder=a, amount=150)  # raising one's own bid too
    bid_place(auction=auction, bidder=b, amount=200)

    assert list(Bid.objects.order_by("sequence").values_list("amount", flat=True)) == [100, 200]
    assert wallet_of(b_wallet).held == 200


@pytest.mark.parametrize("state", ["not started", "ended", "canceled", "settled"])
def test_bids_are_refused_unless_the_auction_is_open_for_bids(merchant, state):
    auction = make_auction(merchant=merchant)
    bidder, wallet = bidder_with(merchant, 1_000)
    if state == "not started":
        auction = make_auction(merchant=merchant, starts_at=timezone.now() + timedelta(minutes=5))
    elif state == "ended":
        end_now(auction)
    elif state == "canceled":
        auction_cancel(auction=auction)
    else:
        end_now(auction)
        auction_finalize(auction=auction)

    with pytest.raises(IllegalTransition):
        bid_place(auction=auction, bidder=bidder, amount=100)
    assert not Hold.objects.exists() and wallet_of(wallet).held == 0


def test_the_seller_cannot_bid_and_nor_can_another_merchants_customer(merchant, seller):
    auction = make_auction(merchant=merchant, seller=seller)
    WalletFactory(customer=seller, balance=0, currency="eur")
    other, _ = bidder_with(CustomerFactory().merchant, 1_000)
    with pytest.raises(InvalidRequest):
        bid_place(auction=auction, bidder=seller, amount=100)
    with pytest.raises(InvalidRequest):
        bid_place(auction=auction, bidder=other, amount=100)
    assert not Bid.objects.exists()


def test_a_bid_is_idempotent_on_its_key(merchant):
    auction = make_auction(merchant=merchant)
    bidder, wallet = bidder_with(merchant, 1_000)
    first = bid_place(auction=auction, bidder=bidder, amount=300, idempotency_key="bid-1")
    again = bid_place(auction=auction, bidder=bidder, amount=300, idempotency_key="bid-1")
    assert again.pk == first.pk and wallet_of(wallet).held == 300
    with pytest.raises(Conflict):
        bid_place(auction=auction, bidder=bidder, amount=400, idempotency_key="bid-1")


# --- Finalize --------------------------------------------------------------------------


def test_finalize_captures_the_winner_to_the_seller_and_voids_every_other_hold(merchant, seller):
    auction = make_auction(merchant=merchant, seller=seller, reserve_price=400)
    a, a_wallet = bidder_with(merchant, 1_000)
    b, b_wallet = bidder_with(merchant, 1_000)
    bid_place(auction=auction, bidder=a, amount=300)
    bid_place(auction=auction, bidder=b, amount=400)
    a_last = bid_place(auction=auction, bidder=a, amount=500)
    end_now(auction)
    OutboundEvent.objects.all().delete()

    auction = auction_finalize(auction=auction)

    assert auction.status == "settled" and auction.finalized_at is not None
    assert wallet_of(a_wallet).balance == 500 and wallet_of(a_wallet).held == 0
    assert wallet_of(b_wallet).balance == 1_000 and wallet_of(b_wallet).held == 0
    seller_wallet = Account.objects.get(pk=auction.proceeds_account_id)
    assert seller_wallet.customer_id == seller.pk and seller_wallet.balance == 500
    assert dict(Bid.objects.values_list("amount", "status")) == {300: "replaced", 400: "lost", 500: "won"}
    assert not Hold.objects.filter(status="pending").exists()
    [settled] = auction_events()
    assert settled.type == "auction.settled"
    assert settled.data | {"transfer": None} == {
        "auction": str(auction.pk),
        "title": "Lot 1",
        "status": "settled",
        "currency": "usd",
        "seller": str(seller.pk),
        "winner": str(a.pk),
        "bid": str(a_last.pk),
        "amount": 500,
        "transfer": None,
    }
    assert settled.data["transfer"] == str(auction.capture_transfer_id)
    wallet_events = {(e.type, e.data["wallet"]) for e in OutboundEvent.objects.filter(type__startswith="wallet.")}
    assert wallet_events == {("wallet.debited", str(a_wallet.pk)), ("wallet.credited", str(seller_wallet.pk))}
    assert [e.type for e in auction.timeline.all()] == [
        "auction.created",
        "bid.placed",
        "bid.placed",
        "bid.placed",
        "auction.settled",
    ]


def test_without_a_seller_the_winner_pays_the_merchant_balance(merchant):
    auction = make_auction(merchant=merchant)
    bidder, wallet = bidder_with(merchant, 1_000)
    bid_place(auction=auction, bidder=bidder, amount=700)
    balance_before = merchant_balance_account(merchant=merchant, currency="usd").balance
    end_now(auction)

    auction_finalize(auction=auction)

    assert merchant_balance_account(merchant=merchant, currency="usd").balance == balance_before + 700
    assert wallet_of(wallet).balance == 300


def test_reserve_not_met_is_unsold_with_every_hold_voided(merchant, seller):
    auction = make_auction(merchant=merchant, seller=seller, reserve_price=1_000)
    a, a_wallet = bidder_with(merchant, 5_000)
    b, b_wallet = bidder_with(merchant, 5_000)
    bid_place(auction=auction, bidder=a, amount=500)
    bid_place(auction=auction, bidder=b, amount=999)
    end_now(auction)

    auction = auction_finalize(auction=auction)

    assert auction.status == "unsold" and auction.capture_transfer_id is None
    for wallet in (a_wallet, b_wallet):
        assert (wallet_of(wallet).balance, wallet_of(wallet).held) == (5_000, 0)
    assert Account.objects.get(pk=auction.proceeds_account_id).balance == 0
    assert set(Bid.objects.values_list("status", flat=True)) == {"lost"}
    [unsold] = auction_events()
    assert (unsold.type, unsold.data["winner"], unsold.data["amount"]) == ("auction.unsold", None, None)
    assert (unsold.data["reason"], unsold.data["highest_bid"], unsold.data["reserve_price"]) == (
        "reserve_not_met",
        999,
        1_000,
    )


def test_a_bid_exactly_at_the_reserve_wins(merchant):
    auction = make_auction(merchant=merchant, reserve_price=1_000)
    bidder, _ = bidder_with(merchant, 5_000)
    bid_place(auction=auction, bidder=bidder, amount=1_000)
    end_now(auction)
    assert auction_finalize(auction=auction).status == "settled"


def test_an_auction_without_bids_ends_unsold(merchant):
    auction = end_now(make_auction(merchant=merchant))
    assert auction_finalize(auction=auction).status == "unsold"
    [unsold] = auction_events()
    assert unsold.data["reason"] == "no_bids" and unsold.data["highest_bid"] is None


def test_finalize_before_the_end_is_refused_and_changes_nothing(merchant):
    auction = make_auction(merchant=merchant)
    bidder, wallet = bidder_with(merchant, 1_000)
    bid_place(auction=auction, bidder=bidder, amount=100)
    with pytest.raises(IllegalTransition):
        auction_finalize(auction=auction)
    auction.refresh_from_db()
    assert auction.status == "open" and wallet_of(wallet).held == 100


def test_finalizing_again_moves_nothing(merchant):
    auction = make_auction(merchant=merchant)
    bidder, wallet = bidder_with(merchant, 1_000)
    bid_place(auction=auction, bidder=bidder, amount=100)
    end_now(auction)
    auction_finalize(auction=auction)

    again = auction_finalize(auction=auction)

    assert again.status == "settled" and wallet_of(wallet).balance == 900
    assert len(auction_events("auction.settled")) == 1
    assert AuctionEvent.objects.filter(type="auction.settled").count() == 1


def test_the_batch_finalizes_ended_auctions_only(merchant):
    bidder, wallet = bidder_with(merchant, 10_000)
    lots = [make_auction(merchant=merchant, title=f"Lot {i}") for i in range(3)]
    running = make_auction(merchant=merchant, title="Still running")
    bid_place(auction=lots[1], bidder=bidder, amount=300)
    bid_place(auction=running, bidder=bidder, amount=100)
    for lot in lots:
        end_now(lot)

    results = list(auctions_finalize(chunk=2))

    assert sum(sum(c.values()) for c in results) == 3 and len(results) == 2  # chunks of 2, then 1
    assert dict(Auction.objects.values_list("title", "status")) == {
        "Lot 0": "unsold",
        "Lot 1": "settled",
        "Lot 2": "unsold",
        "Still running": "open",
    }
    assert (wallet_of(wallet).balance, wallet_of(wallet).held) == (9_700, 100)  # the running bid untouched
    assert list(auctions_finalize()) == []  # nothing left


# --- Cancel ----------------------------------------------------------------------------


def test_cancel_voids_every_hold(merchant, seller):
    auction = make_auction(merchant=merchant, seller=seller)
    a, a_wallet = bidder_with(merchant, 1_000)
    b, b_wallet = bidder_with(merchant, 1_000)
    bid_place(auction=auction, bidder=a, amount=100)
    bid_place(auction=auction, bidder=b, amount=200)
    bid_place(auction=auction, bidder=a, amount=300)

    auction = auction_cancel(auction=auction)

    assert auction.status == "canceled"
    assert not Hold.objects.filter(status="pending").exists()
    for wallet in (a_wallet, b_wallet):
        assert (wallet_of(wallet).balance, wallet_of(wallet).held) == (1_000, 0)
    assert dict(Bid.objects.values_list("amount", "status")) == {100: "replaced", 200: "canceled", 300: "canceled"}
    [canceled] = auction_events()
    assert canceled.type == "auction.canceled" and canceled.data["winner"] is None
    assert auction.timeline.last().type == "auction.canceled"


def test_cancel_is_refused_once_ended_or_finalized_and_finalize_refuses_a_canceled_one(merchant):
    ended = end_now(make_auction(merchant=merchant))
    with pytest.raises(IllegalTransition):
        auction_cancel(auction=ended)
    auction_finalize(auction=ended)
    with pytest.raises(IllegalTransition):
        auction_cancel(auction=ended)

    canceled = auction_cancel(auction=make_auction(merchant=merchant))
    with pytest.raises(IllegalTransition):
        auction_cancel(auction=canceled)
    end_now(canceled)
    with pytest.raises(IllegalTransition):
        auction_finalize(auction=canceled)


def test_auction_holds_cannot_be_settled_outside_the_auction(merchant):
    from wallets.services import hold_capture, hold_void

    auction = make_auction(merchant=merchant)
    bidder, _ = bidder_with(merchant, 1_000)
    bid = bid_place(auction=auction, bidder=bidder, amount=100)
    with pytest.raises(IllegalTransition):
        hold_void(hold=bid.hold)
    with pytest.raises(IllegalTransition):
        hold_capture(hold=bid.hold)


def test_create_refuses_a_seller_of_another_merchant(merchant):
    stranger = CustomerFactory()
    with pytest.raises(InvalidRequest) as exc:
        auction_create(
            merchant=merchant, title="x", currency="usd", ends_at=timezone.now() + timedelta(hours=1), seller=stranger
        )
    assert exc.value.param == "seller"
