"""Reads for auctions, scoped to the caller's merchant: another merchant's auction is
simply not found."""

from django.db.models import Prefetch, QuerySet

from config.errors import NotFound
from config.ids import parse_uuid
from payments.identity.models import Merchant

from .models import Auction, AuctionEvent, Bid


def auction_list(*, merchant: Merchant | None) -> QuerySet[Auction]:
    """`merchant=None` means staff: every merchant's auctions."""
    qs = Auction.objects.select_related("highest_bid")
    return qs if merchant is None else qs.filter(merchant=merchant)


def auction_get(*, merchant: Merchant | None, auction_id, with_bids: bool = False) -> Auction:
    """One auction (with its bids highest first, when asked). Raises NotFound."""
    qs = auction_list(merchant=merchant)
    if with_bids:
        qs = qs.prefetch_related(Prefetch("bids", queryset=Bid.objects.order_by("-amount")))
    auction = qs.filter(pk=parse_uuid(auction_id, what="auction")).first()
    if auction is None:
        raise NotFound(f"No such auction: {auction_id}.")
    return auction


def auction_timeline(*, auction: Auction) -> QuerySet[AuctionEvent]:
    return AuctionEvent.objects.filter(auction=auction).order_by("created_at", "id")
