"""Real threads against PostgreSQL: the auction row lock, not luck, gives one consistent
highest bid, one settlement per auction, and no live hold left on a finished auction."""

import random
import threading
import time
from datetime import timedelta

import pytest
from django.utils import timezone

from auctions.models import Auction, AuctionEvent, Bid
from auctions.services import auction_cancel, auction_finalize, auctions_finalize, bid_place
from auctions.tests.conftest import run_concurrently
from auctions.tests.factories import end_now, make_auction
from payments.tests.factories import CustomerFactory
from wallets.models import Account, Hold
from wallets.selectors import ledger_audit
from wallets.tests.factories import WalletFactory
from webhooks.models import OutboundEvent

pytestmark = [pytest.mark.postgres, pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("shards")]

FUNDS = 100_000


def bidders(merchant, n: int, balance: int = FUNDS) -> list[Account]:
    return [WalletFactory(customer=CustomerFactory(merchant=merchant), balance=balance) for _ in range(n)]


def fresh(wallets) -> dict:
    return {w.pk: Account.objects.get(pk=w.pk) for w in wallets}


def assert_settled_consistently(auction: Auction, wallets: list[Account]) -> None:
    """What every settled auction must look like, however its bids and finalizers raced."""
    auction.refresh_from_db()
    assert auction.status == "settled"
    winner = Bid.objects.get(auction=auction, status="won")
    assert winner.pk == auction.highest_bid_id
    assert winner.amount == Bid.objects.filter(auction=auction).order_by("-amount").first().amount
    assert not Bid.objects.filter(auction=auction, status="active").exists()
    assert not Hold.objects.filter(owner=f"auction:{auction.pk}", status="pending").exists()
    after = fresh(wallets)
    for wallet in wallets:
        paid = winner.amount if wallet.customer_id == winner.bidder_id else 0
        assert (after[wallet.pk].balance, after[wallet.pk].held) == (FUNDS - paid, 0), wallet.customer_id
    assert Account.objects.get(pk=auction.proceeds_account_id).balance == winner.amount
    assert OutboundEvent.objects.filter(type="auction.settled", data__auction=str(auction.pk)).count() == 1
    assert ledger_audit()["ok"]


def test_100_concurrent_bids_leave_one_consistent_highest_and_exact_balances(merchant):
    seller = CustomerFactory(merchant=merchant)
    auction = make_auction(merchant=merchant, seller=seller, min_increment=10)
    wallets = bidders(merchant, 20)
    rng = random.Random(15)
    amounts = [rng.randrange(10, 50_000) for _ in range(100)]

    def work(i):
        wallet = wallets[i % len(wallets)]
        bid_place(auction=auction, bidder=wallet.customer, amount=amounts[i])

    outcomes = run_concurrently(100, work)

    assert not outcomes.errors, outcomes.errors
    assert set(outcomes) <= {"ok", "Conflict"} and outcomes["ok"] >= 1
    accepted = list(Bid.objects.filter(auction=auction).order_by("sequence"))
    assert len(accepted) == outcomes["ok"]
    assert [b.sequence for b in accepted] == list(range(1, len(accepted) + 1))
    # In the order the auction lock let them in, each beat the one before by the increment.
    assert all(later.amount >= earlier.amount + 10 for earlier, later in zip(accepted, accepted[1:], strict=False))
    auction.refresh_from_db()
    assert auction.highest_bid_id == accepted[-1].pk and auction.bid_count == len(accepted)
    # One live hold per bidder with a bid, for exactly its active bid; available exact.
    after = fresh(wallets)
    for wallet in wallets:
        active = Bid.objects.filter(auction=auction, bidder=wallet.customer, status="active").first()
        pending = Hold.objects.filter(account=wallet, status="pending")
        assert pending.count() == (1 if active else 0)
        held = active.amount if active else 0
        assert (after[wallet.pk].balance, after[wallet.pk].held, after[wallet.pk].available) == (
            FUNDS,
            held,
            FUNDS - held,
        )
        if active:
            assert pending.get().pk == active.hold_id
    assert ledger_audit()["ok"]

    end_now(auction)
    auction_finalize(auction=auction)

    assert_settled_consistently(auction, wallets)
    assert Account.objects.get(pk=auction.proceeds_account_id).customer_id == seller.pk


def test_one_bidder_racing_their_own_raises_keeps_exactly_one_live_hold(merchant):
    auction = make_auction(merchant=merchant)
    [wallet] = bidders(merchant, 1, balance=10_000)

    def work(i):
        bid_place(auction=auction, bidder=wallet.customer, amount=100 * (i + 1))

    outcomes = run_concurrently(20, work)

    assert not outcomes.errors, outcomes.errors
    assert set(outcomes) <= {"ok", "Conflict"}
    active = Bid.objects.get(auction=auction, status="active")
    assert Bid.objects.filter(auction=auction).exclude(status="active").count() == outcomes["ok"] - 1
    assert set(Bid.objects.filter(auction=auction).exclude(pk=active.pk).values_list("status", flat=True)) <= {
        "replaced"
    }
    assert Hold.objects.filter(account=wallet, status="pending").get().pk == active.hold_id
    after = Account.objects.get(pk=wallet.pk)
    assert (after.balance, after.held) == (10_000, active.amount)
    assert active.amount == max(Bid.objects.filter(auction=auction).values_list("amount", flat=True))
    assert ledger_audit()["ok"]


def test_bids_that_outrun_the_wallet_are_402_and_leave_the_earlier_hold(merchant):
    """Several bidders with little money race; those whose raise the wallet cannot hold
    get InsufficientFunds and keep their earlier bid, never zero holds, never two."""
    auction = make_auction(merchant=merchant)
    wallets = bidders(merchant, 5, balance=1_000)

    def work(i):
        wallet = wallets[i % 5]
        bid_place(auction=auction, bidder=wallet.customer, amount=100 + 50 * i)

    outcomes = run_concurrently(40, work)

    assert not outcomes.errors, outcomes.errors
    assert outcomes["InsufficientFunds"] > 0  # bids above 1000 cannot be held
    after = fresh(wallets)
    for wallet in wallets:
        active = Bid.objects.filter(auction=auction, bidder=wallet.customer, status="active").first()
        assert after[wallet.pk].held == (active.amount if active else 0)
        assert Hold.objects.filter(account=wallet, status="pending").count() == (1 if active else 0)
    assert ledger_audit()["ok"]


def test_finalizers_racing_settle_the_auction_exactly_once(merchant):
    auction = make_auction(merchant=merchant, seller=CustomerFactory(merchant=merchant))
    wallets = bidders(merchant, 5)
    for i, wallet in enumerate(wallets):
        bid_place(auction=auction, bidder=wallet.customer, amount=1_000 * (i + 1))
    end_now(auction)

    def work(i):
        if i % 2:
            return auction_finalize(auction=auction).status  # the API and the admin
        return ",".join(f"{k}={v}" for c in auctions_finalize() for k, v in c.items()) or "nothing"  # the task

    outcomes = run_concurrently(12, work)

    assert not outcomes.errors, outcomes.errors
    assert outcomes["settled"] == 6  # every API finalizer sees it settled (one did it)
    batch = {k: v for k, v in outcomes.items() if k != "settled"}
    assert sum(batch.values()) == 6 and set(batch) <= {"settled=1", "nothing"}
    assert AuctionEvent.objects.filter(auction=auction, type="auction.settled").count() == 1
    assert Hold.objects.filter(owner=f"auction:{auction.pk}", status="captured").count() == 1
    assert_settled_consistently(auction, wallets)


def test_a_late_bid_racing_finalize_lands_before_it_or_is_refused(merchant):
    """Bidders keep raising until they are refused while finalizers keep trying from
    just before the end: a bid lands before the settlement (and may win) or is a 409,
    and no live hold is ever left on the settled auction."""
    for round_ in range(3):
        auction = make_auction(merchant=merchant, title=f"Lot {round_}", seller=CustomerFactory(merchant=merchant))
        wallets = bidders(merchant, 3)
        ends_at = timezone.now() + timedelta(milliseconds=600)
        Auction.objects.filter(pk=auction.pk).update(ends_at=ends_at)
        refused_at: dict[int, object] = {}
        lock = threading.Lock()

        def work(i, auction=auction, wallets=wallets, ends_at=ends_at, refused_at=refused_at, lock=lock):
            if i < 2:  # finalizers: try until it is done
                while True:
                    try:
                        return auction_finalize(auction=auction).status
                    except Exception as exc:
                        if "finalize it after" not in str(exc):
                            raise
                        time.sleep(0.005)
            wallet = wallets[i - 2]
            amount = 100 * i
            while True:
                try:
                    bid_place(auction=auction, bidder=wallet.customer, amount=amount)
                except Exception as exc:
                    if type(exc).__name__ == "Conflict":  # outbid meanwhile: beat the highest and go on
                        amount = Auction.objects.get(pk=auction.pk).highest_bid.amount + 1
                        continue
                    with lock:
                        refused_at[i] = timezone.now()
                    return type(exc).__name__
                amount += 10

        outcomes = run_concurrently(5, work)

        assert not outcomes.errors, outcomes.errors
        assert outcomes == {"settled": 2, "IllegalTransition": 3}
        auction.refresh_from_db()
        last_bid = Bid.objects.filter(auction=auction).order_by("-created_at").first()
        assert last_bid is None or last_bid.created_at <= auction.finalized_at
        assert all(when >= ends_at for when in refused_at.values())  # refused only once ended
        if auction.status == "settled":
            assert_settled_consistently(auction, wallets)
        else:
            assert auction.status == "unsold" and not Bid.objects.filter(auction=auction).exists()
        assert not Hold.objects.filter(owner=f"auction:{auction.pk}", status="pending").exists()
        OutboundEvent.objects.all().delete()


def test_cancel_racing_bids_leaves_no_live_hold(merchant):
    auction = make_auction(merchant=merchant)
    wallets = bidders(merchant, 10)

    def work(i):
        if i == 0:
            time.sleep(0.05)
            auction_cancel(auction=auction)
            return "canceled"
        bid_place(auction=auction, bidder=wallets[i - 1].customer, amount=100 * i)

    outcomes = run_concurrently(11, work)

    assert not outcomes.errors, outcomes.errors
    assert outcomes["canceled"] == 1 and set(outcomes) <= {"canceled", "ok", "Conflict", "IllegalTransition"}
    assert not Hold.objects.filter(owner=f"auction:{auction.pk}", status="pending").exists()
    assert set(Bid.objects.filter(auction=auction).values_list("status", flat=True)) <= {"canceled", "replaced"}
    assert all((w.balance, w.held) == (FUNDS, 0) for w in fresh(wallets).values())
    assert ledger_audit()["ok"]


def test_finalizing_auctions_that_share_bidders_while_they_spend_does_not_deadlock(merchant):
    """Finalizers of several auctions with the same bidders, and those bidders' wallet
    debits to the merchant's balance, all at once: settlements lock every account they
    touch in one pk-ordered statement, so no cycle forms (a deadlock would surface as an
    OperationalError in some thread)."""
    from wallets.services import wallet_debit

    wallets = bidders(merchant, 4)
    lots = [make_auction(merchant=merchant, title=f"Lot {i}") for i in range(6)]
    for n, lot in enumerate(lots):
        for i, wallet in enumerate(wallets):
            bid_place(auction=lot, bidder=wallet.customer, amount=100 * (n + 1) + 10 * i + 10)
    for lot in lots:
        end_now(lot)

    def work(i):
        if i < 6:
            return auction_finalize(auction=lots[i]).status
        wallet = Account.objects.get(pk=wallets[i % 4].pk)
        for _ in range(5):
            wallet_debit(wallet=wallet, amount=7)

    outcomes = run_concurrently(14, work)

    assert not outcomes.errors, outcomes.errors
    assert outcomes == {"settled": 6, "ok": 8}
    assert not Hold.objects.filter(status="pending").exists()
    winner = wallets[-1]
    won = sum(100 * (n + 1) + 10 * 3 + 10 for n in range(6))
    assert Account.objects.get(pk=winner.pk).balance == FUNDS - won - 2 * 5 * 7
    assert ledger_audit()["ok"]
