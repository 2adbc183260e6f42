"""Writes for auctions: create, bid, cancel, finalize.

A bid is a pending hold on the bidder's wallet for its amount, owned by the auction
(`auction:<id>`), so only these services settle it (the holds API and staff's "void hold"
refuse to), and with no expiry: it lives until the auction settles, is canceled, or the
bidder's higher bid replaces it. Its destination is the auction's proceeds account (the
seller's wallet, or the merchant's balance), so finalizing is a plain capture.

Lock order, everywhere: the auction row (FOR NO KEY UPDATE), then hold rows, then
accounts in pk order; the last two as wallets.services requires. The auction lock
serializes everything that happens to one auction: bids (hence one consistent highest),
cancel and finalize (hence exactly once, and no bid after the end). Settling several
holds (finalize, cancel) locks every account involved in one pk-ordered statement before
the first void or capture, so a settlement never holds a hot account (the merchant's
balance) while waiting for a bidder's wallet that a concurrent debit holds.

Events in the outbox, in the transaction that settles: auction.settled (winner, amount)
and auction.unsold (no bid, or reserve not met), auction.canceled; every change is on the
auction's timeline (AuctionEvent). The wallet events of the capture (wallet.debited for
the winner, wallet.credited for a seller's wallet) come from wallets.
"""

import logging
from collections.abc import Iterator
from datetime import datetime

from django.db import IntegrityError, transaction
from django.utils import timezone

from config.errors import Conflict, DomainError, IllegalTransition, InsufficientFunds, InvalidRequest
from payments.identity.models import Customer, Merchant
from wallets.models import Account, Hold
from wallets.services import (
    account_get_or_create,
    accounts_lock,
    hold_capture,
    hold_create,
    hold_void,
    merchant_balance_account,
)
from webhooks.services import event_emit

from .models import Auction, AuctionEvent, Bid

logger = logging.getLogger("paydesk.auctions")

Status = Auction.Status
FINALIZE_CHUNK = 100


def _event(auction, type: str, *, bid=None, from_status="", to_status="", source="api", data=None) -> AuctionEvent:
    return AuctionEvent.objects.create(
        auction=auction,
        bid=bid,
        type=type,
        from_status=from_status,
        to_status=to_status,
        source=source,
        data=data or {},
    )


def _lock(auction: Auction) -> Auction:
    """The auction row, locked. FOR NO KEY UPDATE: it excludes every other writer of the
    auction but not the KEY SHARE lock of an insert that references it (a bid, an event)."""
    return Auction.objects.select_for_update(no_key=True).get(pk=auction.pk)


def _proceeds_account(*, merchant: Merchant, currency: str, seller: Customer | None) -> Account:
    """The seller's wallet in `currency` (opened if they have none: the proceeds need a
    place to land), else the merchant's balance. Called before any lock is taken: a
    shared account is never created inside a transaction that then waits on locks."""
    merchant_balance = merchant_balance_account(merchant=merchant, currency=currency)
    if seller is None:
        return merchant_balance
    return account_get_or_create(
        kind=Account.Kind.CUSTOMER_WALLET, merchant=merchant, customer=seller, currency=currency
    )


def auction_create(
    *,
    merchant: Merchant,
    title: str,
    currency: str,
    ends_at: datetime,
    starts_at: datetime | None = None,
    reserve_price: int | None = None,
    min_increment: int = 1,
    seller: Customer | None = None,
    idempotency_key: str | None = None,
) -> Auction:
    """Open an auction. Moves no money; the seller (one of the merchant's customers) gets
    a wallet in the currency if they have none.

    Idempotent on (merchant, idempotency_key): a retry returns the first auction.
    Raises InvalidRequest (ends_at not in the future or not after starts_at; a seller of
    another merchant), Conflict (the key was used for another auction).
    """
    currency = currency.lower()
    now = timezone.now()
    starts_at = starts_at or now
    if idempotency_key is not None and (existing := _existing_auction(merchant, idempotency_key, title)) is not None:
        return existing
    if ends_at <= now:
        raise InvalidRequest("ends_at must be in the future.", param="ends_at")
    if ends_at <= starts_at:
        raise InvalidRequest("ends_at must be after starts_at.", param="ends_at")
    if seller is not None and seller.merchant_id != merchant.pk:
        raise InvalidRequest(f"No such customer: {seller.pk}.", param="seller")
    proceeds = _proceeds_account(merchant=merchant, currency=currency, seller=seller)
    try:
        with transaction.atomic():
            auction = Auction.objects.create(
                merchant=merchant,
                title=title,
                currency=currency,
                reserve_price=reserve_price,
                min_increment=min_increment,
                starts_at=starts_at,
                ends_at=ends_at,
                seller=seller,
                proceeds_account=proceeds,
                idempotency_key=idempotency_key,
            )
            _event(
                auction,
                "auction.created",
                to_status=Status.OPEN,
                data={"ends_at": ends_at.isoformat(), "reserve_price": reserve_price, "min_increment": min_increment},
            )
    except IntegrityError:
        if idempotency_key is None or (existing := _existing_auction(merchant, idempotency_key, title)) is None:
            raise
        return existing
    return auction


def _existing_auction(merchant, idempotency_key: str, title: str) -> Auction | None:
    auction = Auction.objects.filter(merchant=merchant, idempotency_key=idempotency_key).first()
    if auction is not None and auction.title != title:
        raise Conflict(f"Idempotency key {idempotency_key!r} was already used for another auction.")
    return auction


def _bidder_wallet(*, auction: Auction, bidder: Customer) -> Account:
    wallet = Account.objects.filter(
        kind=Account.Kind.CUSTOMER_WALLET, customer=bidder, merchant_id=auction.merchant_id, currency=auction.currency
    ).first()
    if wallet is None:
        # Nothing can be held for the bid: the same 402 as an empty wallet, saying why.
        raise InsufficientFunds(f"Customer {bidder.pk} has no {auction.currency} wallet to hold the bid on.")
    return wallet


@transaction.atomic
def bid_place(
    *, auction: Auction, bidder: Customer, amount: int, idempotency_key: str | None = None, source: str = "api"
) -> Bid:
    """Bid `amount` (minor units, the auction's currency) for `bidder`: a hold for the
    amount on their wallet, replacing their earlier bid's hold in the same transaction
    (voided first, so the new hold may reuse what the old one reserved: a bidder with
    100 whose bid is 80 can raise it to 100). Never two live holds for one bidder, never
    a moment with none: the void and the new hold commit together or not at all.

    Locks the auction row first (bids on one auction are serialized: each sees the
    highest before it), then the earlier hold and the bidder's wallet (wallets' order).
    Idempotent on idempotency_key: a retry returns the first bid.
    Raises IllegalTransition (409: the auction is not open, not started, or ended),
    Conflict (409: the bid does not beat the highest by min_increment; the key was used
    for another bid), InsufficientFunds (402: the wallet cannot hold the amount, or the
    bidder has no wallet in the auction's currency; nothing changes), InvalidRequest (the
    seller bidding on their own auction; a bidder of another merchant).
    """
    locked = _lock(auction)
    if idempotency_key is not None and (existing := _existing_bid(idempotency_key, locked, bidder, amount)):
        return existing
    now = timezone.now()  # after the lock: a bid that waited for a finalizer sees the end
    if locked.status != Status.OPEN:
        raise IllegalTransition(f"Auction {locked.pk} is {locked.status}; bids are closed.")
    if now < locked.starts_at:
        raise IllegalTransition(f"Auction {locked.pk} opens for bids at {locked.starts_at.isoformat()}.")
    if now >= locked.ends_at:
        raise IllegalTransition(f"Auction {locked.pk} ended at {locked.ends_at.isoformat()}; bids are closed.")
    if bidder.merchant_id != locked.merchant_id:
        raise InvalidRequest(f"No such customer: {bidder.pk}.", param="customer")
    if bidder.pk == locked.seller_id:
        raise InvalidRequest("The seller cannot bid on their own auction.", param="customer")
    highest = Bid.objects.filter(pk=locked.highest_bid_id).values_list("amount", flat=True).first()
    minimum = locked.minimum_bid(highest)
    if amount < minimum:
        beat = "be at least" if highest is None else f"beat the highest bid ({highest}) by {locked.min_increment}:"
        raise Conflict(f"A bid must {beat} {minimum} or more.", param="amount")
    wallet = _bidder_wallet(auction=locked, bidder=bidder)
    previous = (
        Bid.objects.filter(auction=locked, bidder=bidder, status=Bid.Status.ACTIVE).select_related("hold").first()
    )
    if previous is not None:
        hold_void(hold=previous.hold, owner=locked.hold_owner)
        previous.status = Bid.Status.REPLACED
        previous.save(update_fields=["status"])
    hold = hold_create(
        account=wallet,
        amount=amount,
        destination=locked.proceeds_account,
        reference=f"auction:{locked.pk}",
        owner=locked.hold_owner,
    )
    locked.bid_count += 1
    bid = Bid.objects.create(
        auction=locked,
        bidder=bidder,
        amount=amount,
        sequence=locked.bid_count,
        hold=hold,
        replaces=previous,
        idempotency_key=idempotency_key,
    )
    locked.highest_bid = bid
    locked.save(update_fields=["bid_count", "highest_bid", "updated_at"])
    _event(
        locked,
        "bid.placed",
        bid=bid,
        source=source,
        data={
            "bid": str(bid.pk),
            "bidder": str(bidder.pk),
            "amount": amount,
            "hold": str(hold.pk),
            "replaces": str(previous.pk) if previous is not None else None,
        },
    )
    return bid


def _existing_bid(idempotency_key: str, auction: Auction, bidder: Customer, amount: int) -> Bid | None:
    bid = Bid.objects.filter(idempotency_key=idempotency_key).first()
    if bid is not None and (bid.auction_id, bid.bidder_id, bid.amount) != (auction.pk, bidder.pk, amount):
        raise Conflict(f"Idempotency key {idempotency_key!r} was already used for another bid.")
    return bid


def _lock_active_bids(auction: Auction, *, capture: bool) -> list[Bid]:
    """The auction's active bids with their holds, the hold rows locked (pk order), then
    every account the settlement touches (the bidders' wallets, and the proceeds account
    when it may capture) locked in one pk-ordered statement. Call with the auction row
    locked."""
    bids = list(Bid.objects.filter(auction=auction, status=Bid.Status.ACTIVE).order_by("hold_id"))
    holds = {
        hold.pk: hold
        for hold in Hold.objects.select_for_update(no_key=True).filter(pk__in=[b.hold_id for b in bids]).order_by("pk")
    }
    for bid in bids:
        bid.hold = holds[bid.hold_id]
    if bids:
        proceeds = [auction.proceeds_account_id] if capture else []
        accounts_lock(account_ids=[*(h.account_id for h in holds.values()), *proceeds])
    return bids


def _void_all(auction: Auction, bids: list[Bid], status: str) -> None:
    for bid in bids:
        hold_void(hold=bid.hold, owner=auction.hold_owner)
        bid.status = status
    Bid.objects.filter(pk__in=[b.pk for b in bids]).update(status=status)


@transaction.atomic
def auction_cancel(*, auction: Auction, source: str = "api") -> Auction:
    """Cancel an open auction that has not ended: every bid's hold is voided.

    Locks the auction row, then the holds, then the accounts (pk order).
    Raises IllegalTransition (409) unless the auction is open and its end has not come
    (an ended auction is finalized, so its outcome never depends on how soon the
    finalizer runs).
    """
    locked = _lock(auction)
    if locked.status != Status.OPEN:
        raise IllegalTransition(f"Auction {locked.pk} is {locked.status}; only an open auction can be canceled.")
    if timezone.now() >= locked.ends_at:
        raise IllegalTransition(f"Auction {locked.pk} ended at {locked.ends_at.isoformat()}: finalize it instead.")
    bids = _lock_active_bids(locked, capture=False)
    _void_all(locked, bids, Bid.Status.CANCELED)
    locked.status = Status.CANCELED
    locked.finalized_at = timezone.now()
    locked.save(update_fields=["status", "finalized_at", "updated_at"])
    _event(
        locked,
        "auction.canceled",
        from_status=Status.OPEN,
        to_status=Status.CANCELED,
        source=source,
        data={"voided_bids": len(bids)},
    )
    event_emit(merchant=Merchant(pk=locked.merchant_id), type="auction.canceled", data=_event_data(locked, None))
    return locked


def _event_data(auction: Auction, winner: Bid | None, **extra) -> dict:
    return {
        "auction": str(auction.pk),
        "title": auction.title,
        "status": auction.status,
        "currency": auction.currency,
        "seller": str(auction.seller_id) if auction.seller_id else None,
        "winner": str(winner.bidder_id) if winner is not None else None,
        "bid": str(winner.pk) if winner is not None else None,
        "amount": winner.amount if winner is not None else None,
        **extra,
    }


def _settle(locked: Auction, *, source: str) -> Auction:
    """Finalize an open, ended auction whose row the caller holds locked: the highest
    bid at or above the reserve wins (its hold captured to the proceeds account), every
    other hold is voided; without such a bid every hold is voided and it is unsold."""
    bids = _lock_active_bids(locked, capture=True)
    highest = next((b for b in bids if b.pk == locked.highest_bid_id), None)
    reserve_met = highest is not None and (locked.reserve_price is None or highest.amount >= locked.reserve_price)
    winner = highest if reserve_met else None
    _void_all(locked, [b for b in bids if b is not winner], Bid.Status.LOST)
    extra = {}
    if winner is not None:
        captured = hold_capture(hold=winner.hold, owner=locked.hold_owner, reference=f"auction:{locked.pk}")
        winner.status = Bid.Status.WON
        winner.save(update_fields=["status"])
        locked.status = Status.SETTLED
        locked.capture_transfer_id = captured.capture_transfer_id
        extra = {"transfer": str(captured.capture_transfer_id)}
    else:
        locked.status = Status.UNSOLD
        extra = {
            "reason": "no_bids" if highest is None else "reserve_not_met",
            "highest_bid": highest.amount if highest is not None else None,
            "reserve_price": locked.reserve_price,
        }
    locked.finalized_at = timezone.now()
    locked.save(update_fields=["status", "capture_transfer", "finalized_at", "updated_at"])
    data = _event_data(locked, winner, **extra)
    _event(
        locked,
        f"auction.{locked.status}",
        bid=winner,
        from_status=Status.OPEN,
        to_status=locked.status,
        source=source,
        data=data,
    )
    event_emit(merchant=Merchant(pk=locked.merchant_id), type=f"auction.{locked.status}", data=data)
    return locked


@transaction.atomic
def auction_finalize(*, auction: Auction, source: str = "api") -> Auction:
    """Finalize one auction now that it has ended (see _settle). Once per auction,
    whoever runs it and however often: an auction already settled or unsold is returned
    as it is, moving nothing; concurrent finalizers wait on the auction row and the
    later ones find it finalized.

    Locks the auction row, then the holds, then every account involved (pk order).
    Raises IllegalTransition (409) before ends_at, or for a canceled auction.
    """
    locked = _lock(auction)
    if locked.status in (Status.SETTLED, Status.UNSOLD):
        return locked
    if locked.status != Status.OPEN:
        raise IllegalTransition(f"Auction {locked.pk} is {locked.status}; it cannot be finalized.")
    if timezone.now() < locked.ends_at:
        raise IllegalTransition(f"Auction {locked.pk} ends at {locked.ends_at.isoformat()}; finalize it after.")
    return _settle(locked, source=source)


def auctions_finalize(
    *, limit: int | None = None, chunk: int = FINALIZE_CHUNK, source: str = "task"
) -> Iterator[dict[str, int]]:
    """Finalize every open auction whose end has passed, one transaction per auction,
    yielding counts ({"settled": n, "unsold": m, "failed": k}) after each chunk (the
    management command's progress bar). Any number may run at once: each claims its
    auction with SELECT ... FOR UPDATE SKIP LOCKED and rechecks it is open and ended, so
    none waits for another and no auction is finalized twice (an auction a bid or the API
    holds is skipped; the next run takes it). An auction whose settlement fails is logged
    and left open for the next run; the others go on.
    """
    done = 0
    failed: set = set()
    while limit is None or done < limit:
        now = timezone.now()
        size = chunk if limit is None else min(chunk, limit - done)
        ids = list(
            Auction.objects.filter(status=Status.OPEN, ends_at__lte=now)
            .exclude(pk__in=failed)
            .order_by("ends_at", "pk")
            .values_list("pk", flat=True)[:size]
        )
        if not ids:
            return
        counts: dict[str, int] = {}
        for auction_id in ids:
            outcome = _finalize_claimed(auction_id, now=now, source=source)
            if outcome is None:
                continue
            if outcome == "failed":
                failed.add(auction_id)
            counts[outcome] = counts.get(outcome, 0) + 1
        done += sum(counts.values())
        yield counts
        if not counts:
            return  # every one was held by someone else: leave them to the next run


def _finalize_claimed(auction_id, *, now: datetime, source: str) -> str | None:
    """Finalize one auction if it can be claimed right now; its status, "failed", or
    None (someone else holds it, or it is no longer open and ended)."""
    try:
        with transaction.atomic():
            locked = (
                Auction.objects.select_for_update(no_key=True, skip_locked=True)
                .filter(pk=auction_id, status=Status.OPEN, ends_at__lte=now)
                .first()
            )
            if locked is None:
                return None
            return _settle(locked, source=source).status
    except DomainError:
        logger.exception("auction finalize failed", extra={"auction": str(auction_id)})
        return "failed"
