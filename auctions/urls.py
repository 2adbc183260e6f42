from django.urls import path

from auctions.api import (
    AuctionBidApi,
    AuctionCancelApi,
    AuctionDetailApi,
    AuctionFinalizeApi,
    AuctionListCreateApi,
    AuctionTimelineApi,
)

urlpatterns = [
    path("auctions", AuctionListCreateApi.as_view(), name="auction-list"),
    path("auctions/<str:auction_id>", AuctionDetailApi.as_view(), name="auction-detail"),
    path("auctions/<str:auction_id>/bids", AuctionBidApi.as_view(), name="auction-bids"),
    path("auctions/<str:auction_id>/cancel", AuctionCancelApi.as_view(), name="auction-cancel"),
    path("auctions/<str:auction_id>/finalize", AuctionFinalizeApi.as_view(), name="auction-finalize"),
    path("auctions/<str:auction_id>/timeline", AuctionTimelineApi.as_view(), name="auction-timeline"),
]
