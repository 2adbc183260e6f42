"""Auctions API (API.md "Auctions"): one thin APIView per action. Parse, call one
service, render.

Who may do what: a merchant key (or staff naming a merchant) creates, cancels and
finalizes its auctions and bids for any of its customers (`customer`); an end-user JWT
sees its merchant's auctions and bids as itself (`customer` left out, or its own id;
another id is a 404). An end user sees who bid only on its own bids: other bidders'
ids and holds are null.
"""

import uuid

from django_filters import rest_framework as filters
from drf_spectacular.utils import extend_schema, extend_schema_field, inline_serializer
from rest_framework import serializers
from rest_framework.generics import ListAPIView
from rest_framework.response import Response
from rest_framework.views import APIView

from config.api.docs import ERRORS_MONEY, ERRORS_READ, ERRORS_WRITE
from config.api.fields import CurrencyField, IdField, MinorUnitsField, StrictCharField
from config.api.idempotency import idempotent
from config.api.outputs import ModelOut
from config.api.parsing import parse
from config.errors import NotFound
from payments.identity.models import Customer
from payments.identity.permissions import IsCustomerOrMerchant
from payments.identity.selectors import customer_get

from .models import Auction, AuctionEvent, Bid
from .selectors import auction_get, auction_list, auction_timeline
from .services import auction_cancel, auction_create, auction_finalize, bid_place


def _end_user(request) -> Customer | None:
    """The customer of an end-user JWT; None for a merchant key or staff."""
    caller = request.user
    return caller.customer if caller.api_key is None and caller.customer is not None else None


def _merchant_scope(request):
    """The merchant whose auctions the caller sees (None: staff without one, all)."""
    end_user = _end_user(request)
    return end_user.merchant if end_user is not None else request.user.merchant


def _visible(request, customer_id) -> str | None:
    if customer_id is None:
        return None
    end_user = _end_user(request)
    if end_user is not None and end_user.pk != customer_id:
        return None
    return str(customer_id)


class BidOut(ModelOut):
    auction = serializers.UUIDField(source="auction_id")
    bidder = serializers.SerializerMethodField()
    currency = serializers.CharField(source="auction.currency")
    hold = serializers.SerializerMethodField()

    class Meta:
        model = Bid
        fields = ["id", "auction", "bidder", "amount", "currency", "status", "sequence", "hold", "created_at"]

    def get_bidder(self, obj) -> uuid.UUID | None:
        return _visible(self.context["request"], obj.bidder_id)

    def get_hold(self, obj) -> uuid.UUID | None:
        return str(obj.hold_id) if _visible(self.context["request"], obj.bidder_id) else None


class AuctionOut(ModelOut):
    seller = serializers.UUIDField(source="seller_id", allow_null=True)
    highest_bid = serializers.SerializerMethodField()
    minimum_bid = serializers.SerializerMethodField()
    winner = serializers.SerializerMethodField()

    class Meta:
        model = Auction
        fields = [
            "id",
            "title",
            "status",
            "currency",
            "reserve_price",
            "min_increment",
            "minimum_bid",
            "starts_at",
            "ends_at",
            "seller",
            "highest_bid",
            "bid_count",
            "winner",
            "finalized_at",
            "created_at",
        ]

    @extend_schema_field(BidOut(allow_null=True))
    def get_highest_bid(self, obj) -> dict | None:
        if obj.highest_bid is None:
            return None
        obj.highest_bid.auction = obj
        return BidOut(obj.highest_bid, context=self.context).data

    def get_minimum_bid(self, obj) -> int | None:
        """What the next bid must be at least, while bids are open."""
        if obj.status != Auction.Status.OPEN:
            return None
        return obj.minimum_bid(obj.highest_bid.amount if obj.highest_bid else None)

    def get_winner(self, obj) -> uuid.UUID | None:
        if obj.status != Auction.Status.SETTLED:
            return None
        return _visible(self.context["request"], obj.highest_bid.bidder_id)


class AuctionDetailOut(AuctionOut):
    bids = serializers.SerializerMethodField()

    class Meta(AuctionOut.Meta):
        fields = [*AuctionOut.Meta.fields, "bids"]

    @extend_schema_field(BidOut(many=True))
    def get_bids(self, obj) -> list[dict]:
        bids = list(obj.bids.all())
        for bid in bids:
            bid.auction = obj
        return BidOut(bids, many=True, context=self.context).data


def _detail(request, auction) -> dict:
    fresh = auction_get(merchant=_merchant_scope(request), auction_id=auction.pk, with_bids=True)
    return AuctionDetailOut(fresh, context={"request": request}).data


class AuctionFilter(filters.FilterSet):
    status = filters.ChoiceFilter(choices=Auction.Status.choices)
    seller = filters.UUIDFilter(field_name="seller_id")

    class Meta:
        model = Auction
        fields = ["status", "seller"]


class AuctionListCreateApi(ListAPIView):
    serializer_class = AuctionOut
    filterset_class = AuctionFilter

    class Input(serializers.Serializer):
        title = StrictCharField(max_length=200)
        currency = CurrencyField()
        reserve_price = MinorUnitsField(required=False, allow_null=True, default=None)
        min_increment = MinorUnitsField(required=False, default=1)
        starts_at = serializers.DateTimeField(required=False, allow_null=True, default=None)
        ends_at = serializers.DateTimeField()
        seller = IdField(required=False, allow_null=True, default=None)

    def get_permissions(self):
        if self.request.method == "GET":
            return [IsCustomerOrMerchant()]
        return super().get_permissions()

    def get_queryset(self):
        if getattr(self, "swagger_fake_view", False):
            return Auction.objects.none()
        return auction_list(merchant=_merchant_scope(self.request)).order_by("-created_at", "id")

    @extend_schema(
        request=Input,
        responses={201: AuctionDetailOut, **ERRORS_WRITE},
        summary="Open an auction (proceeds to the seller's wallet, or the merchant's balance)",
    )
    @idempotent
    def post(self, request):
        data = parse(self.Input, request.data)
        merchant = request.user.require_merchant()
        seller = None
        if data["seller"] is not None:
            seller = customer_get(merchant=merchant, customer_id=data["seller"], param="seller")
        auction = auction_create(
            merchant=merchant,
            title=data["title"],
            currency=data["currency"],
            reserve_price=data["reserve_price"],
            min_increment=data["min_increment"],
            starts_at=data["starts_at"],
            ends_at=data["ends_at"],
            seller=seller,
            idempotency_key=request.idempotency_key,
        )
        return Response(_detail(request, auction), status=201)


class AuctionDetailApi(APIView):
    permission_classes = [IsCustomerOrMerchant]

    @extend_schema(responses={200: AuctionDetailOut, **ERRORS_READ}, summary="An auction with its bids, highest first")
    def get(self, request, auction_id):
        auction = auction_get(merchant=_merchant_scope(request), auction_id=auction_id, with_bids=True)
        return Response(AuctionDetailOut(auction, context={"request": request}).data)


class AuctionBidApi(APIView):
    permission_classes = [IsCustomerOrMerchant]

    class Input(serializers.Serializer):
        customer = IdField(required=False, allow_null=True, default=None)
        amount = MinorUnitsField()

    @extend_schema(
        request=Input,
        responses={201: BidOut, **ERRORS_MONEY},
        summary="Bid: a hold on the bidder's wallet, replacing their earlier bid's",
    )
    @idempotent
    def post(self, request, auction_id):
        data = parse(self.Input, request.data)
        auction = auction_get(merchant=_merchant_scope(request), auction_id=auction_id)
        end_user = _end_user(request)
        if end_user is not None:
            if data["customer"] is not None and data["customer"] != end_user.pk:
                raise NotFound(f"No such customer: {data['customer']}.", param="customer")
            bidder = end_user
        elif data["customer"] is None:
            raise serializers.ValidationError({"customer": ["This field is required with a merchant key."]})
        else:
            bidder = customer_get(merchant=auction.merchant, customer_id=data["customer"], param="customer")
        bid = bid_place(auction=auction, bidder=bidder, amount=data["amount"], idempotency_key=request.idempotency_key)
        return Response(BidOut(bid, context={"request": request}).data, status=201)


class AuctionCancelApi(APIView):
    class Input(serializers.Serializer):
        """No fields; parsed so that a malformed body is a 400 before anything changes."""

    @extend_schema(request=None, responses={200: AuctionDetailOut, **ERRORS_WRITE}, summary="Cancel: every hold voided")
    @idempotent
    def post(self, request, auction_id):
        parse(self.Input, request.data)
        auction = auction_get(merchant=request.user.merchant, auction_id=auction_id)
        auction_cancel(auction=auction)
        return Response(_detail(request, auction))


class AuctionFinalizeApi(APIView):
    class Input(serializers.Serializer):
        """No fields; parsed so that a malformed body is a 400 before anything changes."""

    @extend_schema(
        request=None,
        responses={200: AuctionDetailOut, **ERRORS_WRITE},
        summary="Finalize after ends_at: the winner's hold captured to the seller, the others voided",
    )
    @idempotent
    def post(self, request, auction_id):
        parse(self.Input, request.data)
        auction = auction_get(merchant=request.user.merchant, auction_id=auction_id)
        auction_finalize(auction=auction)
        return Response(_detail(request, auction))


class AuctionTimelineApi(APIView):
    class EventOut(ModelOut):
        status = serializers.SerializerMethodField()
        from_status = serializers.SerializerMethodField()

        class Meta:
            model = AuctionEvent
            fields = ["type", "status", "from_status", "source", "created_at", "data"]

        def get_status(self, obj) -> str | None:
            return obj.to_status or None

        def get_from_status(self, obj) -> str | None:
            return obj.from_status or None

    @extend_schema(
        responses={
            200: inline_serializer(
                name="AuctionTimeline",
                fields={
                    "auction": serializers.UUIDField(),
                    "status": serializers.CharField(),
                    "events": EventOut(many=True),
                },
            ),
            **ERRORS_READ,
        },
        summary="The auction's timeline, oldest first",
    )
    def get(self, request, auction_id):
        auction = auction_get(merchant=request.user.merchant, auction_id=auction_id)
        events = self.EventOut(auction_timeline(auction=auction), many=True).data
        return Response({"auction": str(auction.pk), "status": auction.status, "events": events})
