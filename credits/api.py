"""Credits API (API.md "Credits"): one thin APIView per action. Parse, call one
service, render.

Who the customer is: an end-user JWT acts for its own customer only (naming another is
a 404); a merchant key names one of its customers with `customer` (body, or `?customer=`
on GET); staff may name any customer. A `customer` that is not a UUID is a 400 naming
it; a UUID of no customer the caller may see is a 404.
"""

import uuid

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema, inline_serializer
from rest_framework import serializers
from rest_framework.generics import ListAPIView
from rest_framework.response import Response
from rest_framework.views import APIView

from config.api.docs import ERRORS_MONEY, ERRORS_READ
from config.api.fields import MinorUnitsField
from config.api.idempotency import idempotent
from config.api.outputs import ModelOut
from config.api.parsing import parse
from config.errors import InvalidRequest, NotFound
from payments.identity.models import Customer
from payments.identity.permissions import IsCustomerOrMerchant, IsMerchantOrStaff
from payments.identity.selectors import customer_get
from wallets.models import Entry

from .checkout import credits_checkout_create
from .models import Grant
from .selectors import credits_balance, credits_ledger, pack_get
from .services import MAX_UNITS, credits_debit, credits_grant


def _customer_id(value) -> uuid.UUID | None:
    """The `customer` the caller named (body or query), None if none. Raises InvalidRequest
    (param "customer") unless it is a UUID: a malformed id is a bad request, not a 404."""
    if value is None or value == "":
        return None
    try:
        return uuid.UUID(str(value))
    except ValueError:
        raise InvalidRequest(f"customer: Must be a valid UUID, not {value!r}.", param="customer")


def _customer(request, customer_id) -> Customer:
    caller = request.user
    pk = _customer_id(customer_id)
    if caller.api_key is None and caller.customer is not None:
        if pk is not None and pk != caller.customer.pk:
            raise NotFound(f"No such customer: {customer_id}.", param="customer")
        return caller.customer
    if pk is None:
        raise InvalidRequest("customer: This field is required with a merchant key or as staff.", param="customer")
    return customer_get(merchant=caller.merchant, customer_id=pk, param="customer")


class UnitsField(MinorUnitsField):
    """Whole credits: a JSON integer (no float, string or boolean), 1 to MAX_UNITS."""

    default_error_messages = {**MinorUnitsField.default_error_messages, "invalid": "Must be an integer, not {kind}."}


def _units_field(**kwargs):
    return UnitsField(min_value=1, max_value=MAX_UNITS, **kwargs)


BalanceOut = inline_serializer(
    name="CreditsBalance",
    fields={"data": inline_serializer(name="CreditsBalanceData", fields={"balance": serializers.IntegerField()})},
)


class UserOut(ModelOut):
    class Meta:
        model = Customer
        fields = ["id", "email", "name", "external_id"]


# `me` is the end user of the JWT. A merchant key, or staff in the browsable API, look
# at one of their customers the same way by naming it, as they do for the ledger.
CUSTOMER_QUERY = OpenApiParameter(
    "customer", OpenApiTypes.UUID, description="With a merchant key or as staff: the customer's id."
)


class MeHelloApi(APIView):
    permission_classes = [IsCustomerOrMerchant]

    @extend_schema(
        parameters=[CUSTOMER_QUERY],
        responses={
            200: inline_serializer(
                name="MeHello", fields={"data": inline_serializer(name="MeHelloData", fields={"user": UserOut()})}
            ),
            **ERRORS_READ,
        },
    )
    def get(self, request):
        customer = _customer(request, request.query_params.get("customer"))
        return Response({"data": {"user": UserOut(customer).data}})


class MeCreditsApi(APIView):
    permission_classes = [IsCustomerOrMerchant]

    @extend_schema(parameters=[CUSTOMER_QUERY], responses={200: BalanceOut, **ERRORS_READ})
    def get(self, request):
        customer = _customer(request, request.query_params.get("customer"))
        return Response({"data": {"balance": credits_balance(customer=customer)}})


class CreditsDebitApi(APIView):
    permission_classes = [IsCustomerOrMerchant]

    class Input(serializers.Serializer):
        delta = _units_field(help_text="Credits to spend (a positive integer).")
        reason = serializers.CharField(required=False, default="", allow_blank=True, max_length=1000)
        customer = serializers.CharField(required=False, default="", allow_blank=True)

    @extend_schema(request=Input, responses={200: BalanceOut, **ERRORS_MONEY})
    @idempotent
    def post(self, request):
        data = parse(self.Input, request.data)
        customer = _customer(request, data["customer"])
        _, balance = credits_debit(customer=customer, units=data["delta"], reason=data["reason"])
        return Response({"data": {"balance": balance}})


class UseCreditsApi(APIView):
    permission_classes = [IsCustomerOrMerchant]

    class Input(serializers.Serializer):
        units = _units_field()
        ref = serializers.CharField(required=False, default="", allow_blank=True, max_length=200)
        customer = serializers.CharField(required=False, default="", allow_blank=True)

    @extend_schema(request=Input, responses={200: BalanceOut, **ERRORS_MONEY})
    @idempotent
    def post(self, request):
        data = parse(self.Input, request.data)
        customer = _customer(request, data["customer"])
        _, balance = credits_debit(customer=customer, units=data["units"], ref=data["ref"])
        return Response({"data": {"balance": balance}})


class GrantOut(ModelOut):
    customer = serializers.UUIDField(source="customer_id", read_only=True)

    class Meta:
        model = Grant
        fields = ["id", "customer", "units", "remaining", "source", "reason", "expires_at", "created_at"]


class CreditsGrantApi(APIView):
    permission_classes = [IsMerchantOrStaff]

    class Input(serializers.Serializer):
        customer = serializers.CharField()
        units = _units_field()
        reason = serializers.CharField(max_length=1000)

    @extend_schema(
        request=Input,
        responses={
            201: inline_serializer(
                name="CreditsGrantCreated",
                fields={
                    "data": inline_serializer(
                        name="CreditsGrantData", fields={"grant": GrantOut(), "balance": serializers.IntegerField()}
                    )
                },
            ),
            **ERRORS_MONEY,
        },
    )
    @idempotent
    def post(self, request):
        data = parse(self.Input, request.data)
        customer = _customer(request, data["customer"])
        caller = request.user
        grant, _ = credits_grant(
            customer=customer,
            units=data["units"],
            source=Grant.Source.STAFF if caller.api_key is None else Grant.Source.MERCHANT,
            reason=data["reason"],
            created_by=caller.staff_user,
        )
        return Response(
            {"data": {"grant": GrantOut(grant).data, "balance": credits_balance(customer=customer)}}, status=201
        )


class LedgerEntryOut(ModelOut):
    # Every credits movement is one ledger transfer with exactly one leg on the
    # customer's credit account: its UUID names the item (the entry's integer pk is internal).
    id = serializers.UUIDField(source="transfer_id", read_only=True, help_text="The ledger transfer's id.")
    type = serializers.SerializerMethodField()
    units = serializers.IntegerField(source="amount")
    reason = serializers.CharField(source="transfer.description")
    reference = serializers.CharField(source="transfer.reference")

    class Meta:
        model = Entry
        fields = ["id", "type", "units", "balance_after", "reason", "reference", "created_at"]

    def get_type(self, entry) -> str:
        parts = entry.transfer.reference.split(":")
        return parts[1] if len(parts) > 1 and parts[0] == "credits" else entry.transfer.kind


class CreditsLedgerApi(ListAPIView):
    permission_classes = [IsCustomerOrMerchant]
    serializer_class = LedgerEntryOut
    filter_backends: list = []

    def get_queryset(self):
        if getattr(self, "swagger_fake_view", False):
            return Entry.objects.none()
        customer = _customer(self.request, self.request.query_params.get("customer"))
        return credits_ledger(customer=customer)

    @extend_schema(
        parameters=[CUSTOMER_QUERY],
        responses={200: LedgerEntryOut(many=True), **ERRORS_READ},
    )
    def get(self, request, *args, **kwargs):
        return super().get(request, *args, **kwargs)


class CreditsCheckoutApi(APIView):
    permission_classes = [IsCustomerOrMerchant]

    class Input(serializers.Serializer):
        pack = serializers.CharField(max_length=100)
        success_url = serializers.URLField(max_length=2000)
        cancel_url = serializers.URLField(max_length=2000)
        customer = serializers.CharField(required=False, default="", allow_blank=True)

    @extend_schema(
        request=Input,
        responses={
            200: inline_serializer(
                name="CreditsCheckout", fields={"url": serializers.URLField(), "id": serializers.UUIDField()}
            ),
            **ERRORS_MONEY,
        },
    )
    @idempotent(calls_provider=True)  # a Stripe Checkout Session
    def post(self, request):
        data = parse(self.Input, request.data)
        customer = _customer(request, data["customer"])
        pack = pack_get(merchant=customer.merchant, pack=data["pack"])
        checkout = credits_checkout_create(
            customer=customer, pack=pack, success_url=data["success_url"], cancel_url=data["cancel_url"]
        )
        url = checkout.url
        if checkout.provider == "mock":
            url = request.build_absolute_uri(url)
        return Response({"url": url, "id": str(checkout.pk)})
