"""Wallets API (API.md "Wallets"): one thin APIView per action. Parse, call one
service, render. Every lookup is scoped to the caller's merchant: another merchant's
customer or hold is a 404."""

from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import serializers
from rest_framework.generics import ListAPIView
from rest_framework.response import Response
from rest_framework.views import APIView

from config.api.docs import ERRORS_MONEY, ERRORS_READ, ERRORS_WRITE
from config.api.fields import CurrencyField, IdField, MinorUnitsField
from config.api.idempotency import idempotent
from config.api.parsing import parse
from config.currencies import is_valid_currency
from config.errors import InvalidRequest
from wallets.models import Account, Entry
from wallets.selectors import customer_for_wallet, hold_get, wallet_get, wallet_ledger
from wallets.services import hold_capture, hold_create, hold_void, wallet_create, wallet_credit, wallet_debit

from .serializers import EntryOut, HoldOut, WalletOut

CURRENCY_QUERY = OpenApiParameter("currency", str, description="The wallet's currency (if several).")


def _query_currency(request) -> str | None:
    currency = request.query_params.get("currency")
    if currency is None or currency == "":
        return None
    if not is_valid_currency(currency):
        raise InvalidRequest(f"Unknown or malformed ISO 4217 currency code: {currency!r}.", param="currency")
    return currency.lower()


def _render_wallet(wallet: Account, status: int = 200) -> Response:
    # The services set balance and held on `wallet` from the locked row they updated.
    return Response(WalletOut(wallet).data, status=status)


class WalletCreateApi(APIView):
    class Input(serializers.Serializer):
        customer = IdField()
        currency = CurrencyField()

    @extend_schema(request=Input, responses={201: WalletOut, **ERRORS_WRITE})
    @idempotent
    def post(self, request):
        data = parse(self.Input, request.data)
        merchant = request.user.require_merchant()
        customer = customer_for_wallet(merchant=merchant, customer_id=data["customer"], param="customer")
        wallet = wallet_create(customer=customer, currency=data["currency"])
        return Response(WalletOut(wallet).data, status=201)


class WalletDetailApi(APIView):
    @extend_schema(parameters=[CURRENCY_QUERY], responses={200: WalletOut, **ERRORS_READ})
    def get(self, request, customer_id):
        wallet = wallet_get(merchant=request.user.merchant, customer_id=customer_id, currency=_query_currency(request))
        return Response(WalletOut(wallet).data)


class WalletLedgerApi(ListAPIView):
    serializer_class = EntryOut
    filter_backends: list = []

    def get_queryset(self):
        if getattr(self, "swagger_fake_view", False):  # schema generation has no caller
            return Entry.objects.none()
        wallet = wallet_get(
            merchant=self.request.user.merchant,
            customer_id=self.kwargs["customer_id"],
            currency=_query_currency(self.request),
        )
        return wallet_ledger(wallet=wallet)

    @extend_schema(parameters=[CURRENCY_QUERY], responses={200: EntryOut(many=True), **ERRORS_READ})
    def get(self, request, *args, **kwargs):
        return super().get(request, *args, **kwargs)


class _MoneyInput(serializers.Serializer):
    amount = MinorUnitsField()
    currency = CurrencyField()
    reason = serializers.CharField(required=False, default="", allow_blank=True, max_length=1000)
    reference = serializers.CharField(required=False, default="", allow_blank=True, max_length=255)


class WalletCreditApi(APIView):
    class Input(_MoneyInput):
        pass

    @extend_schema(request=Input, responses={200: WalletOut, **ERRORS_MONEY})
    @idempotent
    def post(self, request, customer_id):
        data = parse(self.Input, request.data)
        wallet = wallet_get(
            merchant=request.user.require_merchant(), customer_id=customer_id, currency=data["currency"]
        )
        wallet_credit(
            wallet=wallet,
            amount=data["amount"],
            reference=data["reference"],
            reason=data["reason"],
            idempotency_key=request.idempotency_key,
        )
        return _render_wallet(wallet)


class WalletDebitApi(APIView):
    class Input(_MoneyInput):
        pass

    @extend_schema(request=Input, responses={200: WalletOut, **ERRORS_MONEY})
    @idempotent
    def post(self, request, customer_id):
        data = parse(self.Input, request.data)
        wallet = wallet_get(
            merchant=request.user.require_merchant(), customer_id=customer_id, currency=data["currency"]
        )
        wallet_debit(
            wallet=wallet,
            amount=data["amount"],
            reference=data["reference"],
            reason=data["reason"],
            idempotency_key=request.idempotency_key,
        )
        return _render_wallet(wallet)


class HoldCreateApi(APIView):
    class Input(serializers.Serializer):
        amount = MinorUnitsField()
        currency = CurrencyField()
        expires_at = serializers.DateTimeField(required=False, allow_null=True, default=None)
        reference = serializers.CharField(required=False, default="", allow_blank=True, max_length=255)

    @extend_schema(request=Input, responses={201: HoldOut, **ERRORS_MONEY})
    @idempotent
    def post(self, request, customer_id):
        data = parse(self.Input, request.data)
        wallet = wallet_get(
            merchant=request.user.require_merchant(), customer_id=customer_id, currency=data["currency"]
        )
        hold = hold_create(
            account=wallet,
            amount=data["amount"],
            expires_at=data["expires_at"],
            reference=data["reference"],
            idempotency_key=request.idempotency_key,
        )
        return Response(HoldOut(hold).data, status=201)


class HoldCaptureApi(APIView):
    class Input(serializers.Serializer):
        amount = MinorUnitsField(required=False, default=None, allow_null=True)

    @extend_schema(request=Input, responses={200: HoldOut, **ERRORS_MONEY})
    @idempotent
    def post(self, request, hold_id):
        data = parse(self.Input, request.data or {})
        hold = hold_get(merchant=request.user.require_merchant(), hold_id=hold_id)
        hold = hold_capture(hold=hold, amount=data["amount"])
        return Response(HoldOut(hold).data)


class HoldVoidApi(APIView):
    @extend_schema(request=None, responses={200: HoldOut, **ERRORS_WRITE})
    @idempotent
    def post(self, request, hold_id):
        hold = hold_get(merchant=request.user.require_merchant(), hold_id=hold_id)
        hold = hold_void(hold=hold)
        return Response(HoldOut(hold).data)
