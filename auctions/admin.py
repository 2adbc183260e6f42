"""Back office for auctions: auctions with their bids and timeline inline, read-only;
staff change them only through the actions, which call the services ("Cancel" voids
every hold, "Finalize now" settles an ended auction without waiting for the periodic
task). Each action needs its own permission (auctions.cancel_auction,
auctions.finalize_auction)."""

from django.contrib import admin, messages

from config.admin_tools import ReadOnlyAdmin, ReadOnlyTabularInline
from config.errors import DomainError
from config.money_display import money

from .models import Auction, AuctionEvent, Bid
from .services import auction_cancel, auction_finalize


class BidInline(ReadOnlyTabularInline):
    model = Bid
    fk_name = "auction"
    fields = ["sequence", "bidder", "amount_display", "status", "hold", "created_at"]
    readonly_fields = fields
    ordering = ["-amount"]

    @admin.display(description="amount")
    def amount_display(self, obj):
        return money(obj.amount, obj.auction.currency)


class TimelineInline(ReadOnlyTabularInline):
    model = AuctionEvent
    fields = ["created_at", "type", "from_status", "to_status", "source", "data"]
    readonly_fields = fields
    ordering = ["created_at", "id"]


@admin.register(Auction)
class AuctionAdmin(ReadOnlyAdmin):
    list_display = ["title", "merchant", "status", "highest_display", "reserve_display", "ends_at", "bid_count"]
    list_filter = ["status", ("merchant", admin.RelatedOnlyFieldListFilter), "currency"]
    search_fields = ["id", "title", "seller__external_id", "seller__email"]
    list_select_related = ["merchant", "highest_bid"]
    date_hierarchy = "ends_at"
    readonly_fields = [f.name for f in Auction._meta.fields]
    inlines = [BidInline, TimelineInline]
    actions = ["cancel_auctions", "finalize_now"]

    def has_cancel_auction_permission(self, request):
        return request.user.has_perm("auctions.cancel_auction")

    def has_finalize_auction_permission(self, request):
        return request.user.has_perm("auctions.finalize_auction")

    @admin.display(description="highest bid")
    def highest_display(self, obj):
        return money(obj.highest_bid.amount, obj.currency) if obj.highest_bid else "—"

    @admin.display(description="reserve")
    def reserve_display(self, obj):
        return money(obj.reserve_price, obj.currency) if obj.reserve_price else "—"

    @admin.action(description="Cancel (void every bid's hold)", permissions=["cancel_auction"])
    def cancel_auctions(self, request, queryset):
        canceled = 0
        for auction in queryset:
            try:
                auction_cancel(auction=auction, source="staff")
                canceled += 1
            except DomainError as exc:
                messages.error(request, f"{auction.title} ({auction.pk}): {exc.message}")
        if canceled:
            messages.success(request, f"{canceled} auctions canceled; their holds are voided.")

    @admin.action(
        description="Finalize now (ended auctions: capture the winner, void the rest)",
        permissions=["finalize_auction"],
    )
    def finalize_now(self, request, queryset):
        outcomes: dict[str, int] = {}
        for auction in queryset:
            try:
                was_open = auction.status == Auction.Status.OPEN
                status = auction_finalize(auction=auction, source="staff").status
            except DomainError as exc:
                messages.error(request, f"{auction.title} ({auction.pk}): {exc.message}")
                continue
            key = status if was_open else f"already {status}"
            outcomes[key] = outcomes.get(key, 0) + 1
        if outcomes:
            summary = ", ".join(f"{key}: {count}" for key, count in sorted(outcomes.items()))
            messages.success(request, f"Finalized: {summary}.")
