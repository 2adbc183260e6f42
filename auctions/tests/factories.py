"""Auctions for tests, made through the service so every row is as the API makes it."""

from datetime import timedelta

from django.utils import timezone

from auctions.models import Auction
from auctions.services import auction_create


def make_auction(*, merchant, seller=None, currency="usd", minutes=60, **kwargs) -> Auction:
    kwargs.setdefault("title", "Lot 1")
    return auction_create(
        merchant=merchant,
        seller=seller,
        currency=currency,
        ends_at=timezone.now() + timedelta(minutes=minutes),
        **kwargs,
    )


def end_now(auction: Auction, *, ago: timedelta = timedelta(seconds=1)) -> Auction:
    """Time passes: the auction's end moves into the past (its start before it)."""
    ends_at = timezone.now() - ago
    Auction.objects.filter(pk=auction.pk).update(ends_at=ends_at, starts_at=min(auction.starts_at, ends_at - ago))
    auction.refresh_from_db()
    return auction
