from django.db.models import Prefetch
from django_filters import rest_framework as filters
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema, extend_schema_field
from rest_framework import serializers
from rest_framework.generics import ListAPIView
from rest_framework.response import Response
from rest_framework.views import APIView

from config.api.docs import ERRORS_MONEY, ERRORS_READ, ERRORS_WRITE
from config.api.fields import CurrencyField, MinorUnitsField, StrictCharField, StrictIntegerField
from config.api.idempotency import idempotent
from config.api.outputs import ModelOut
from config.api.parsing import parse
from config.errors import NotFound
from config.ids import parse_uuid
from installments.models import Installment, InstallmentCharge, InstallmentOrder
from installments.schedule import MAX_INSTALLMENTS
from installments.services import installment_order_cancel, installment_order_create, installment_order_pay
from payments.identity.selectors import customer_get


def order_list(*, merchant):
    qs = InstallmentOrder.objects.prefetch_related(
        Prefetch(
            "installments",
            queryset=Installment.objects.order_by("sequence").prefetch_related(
                Prefetch("charge_attempts", queryset=InstallmentCharge.objects.select_related("charge"))
            ),
        )
    )
    return qs if merchant is None else qs.filter(merchant=merchant)


def order_get(*, merchant, order_id) -> InstallmentOrder:
    order = order_list(merchant=merchant).filter(pk=parse_uuid(order_id, what="installment order")).first()
    if order is None:
        raise NotFound(f"No such installment order: {order_id}.")
    return order


class ChargeAttemptOut(ModelOut):
    charge = serializers.UUIDField(source="charge_id")
    status = serializers.CharField(source="charge.status")
    wallet_amount = serializers.IntegerField(source="charge.wallet_amount")
    external_amount = serializers.IntegerField(source="charge.external_amount")

    class Meta:
        model = InstallmentCharge
        fields = ["attempt", "charge", "status", "wallet_amount", "external_amount", "created_at"]


class InstallmentOut(ModelOut):
    charges = ChargeAttemptOut(source="charge_attempts", many=True)

    class Meta:
        model = Installment
        fields = [
            "id",
            "sequence",
            "due_date",
            "amount",
            "status",
            "attempts",
            "next_attempt_at",
            "last_error",
            "paid_at",
            "charges",
        ]


class OrderOut(ModelOut):
    customer = serializers.UUIDField(source="customer_id")
    installments = InstallmentOut(many=True)

    class Meta:
        model = InstallmentOrder
        fields = [
            "id",
            "customer",
            "amount",
            "currency",
            "down_payment",
            "status",
            "interval",
            "interval_count",
            "description",
            "metadata",
            "installments",
            "created_at",
        ]


@extend_schema_field(OpenApiTypes.INT)
class ScheduleItemIn(serializers.Serializer):
    due_date = serializers.DateField()
    amount = MinorUnitsField()


class OrderFilter(filters.FilterSet):
    status = filters.ChoiceFilter(choices=InstallmentOrder.Status.choices)
    customer = filters.UUIDFilter(field_name="customer_id")

    class Meta:
        model = InstallmentOrder
        fields = ["status", "customer"]


class InstallmentOrderListCreateApi(ListAPIView):
    serializer_class = OrderOut
    filterset_class = OrderFilter

    class Input(serializers.Serializer):
        customer = serializers.UUIDField()
        amount = MinorUnitsField()
        currency = CurrencyField()
        installment_count = StrictIntegerField(required=False, min_value=1, max_value=MAX_INSTALLMENTS)
        interval = serializers.ChoiceField(choices=InstallmentOrder.Interval.choices, required=False)
        interval_count = StrictIntegerField(required=False, default=1, min_value=1, max_value=365)
        start_date = serializers.DateField(required=False)
        schedule = ScheduleItemIn(
            many=True,
            required=False,
            allow_empty=False,
            max_length=MAX_INSTALLMENTS,
            error_messages={
                "empty": "A schedule needs at least one installment.",
                "max_length": f"A schedule has at most {MAX_INSTALLMENTS} installments.",
            },
        )
        down_payment = MinorUnitsField(required=False, min_value=0, default=0)
        description = StrictCharField(required=False, default="", allow_blank=True, max_length=1000)
        metadata = serializers.DictField(required=False, default=dict)

        def validate(self, data):
            if "schedule" in data and ("installment_count" in data or "interval" in data):
                raise serializers.ValidationError({"schedule": ["Give a schedule or installment_count/interval."]})
            if "schedule" not in data and ("installment_count" not in data or "interval" not in data):
                missing = "installment_count" if "installment_count" not in data else "interval"
                raise serializers.ValidationError({missing: ["Required unless a schedule is given."]})
            return data

    def get_queryset(self):
        if getattr(self, "swagger_fake_view", False):
            return InstallmentOrder.objects.none()
        return order_list(merchant=self.request.user.merchant).order_by("-created_at", "id")

    @extend_schema(request=Input, responses={201: OrderOut, **ERRORS_MONEY}, summary="Create an installment order")
    @idempotent(calls_provider=True)  # a down payment may charge the card
    def post(self, request):
        data = parse(self.Input, request.data)
        merchant = request.user.require_merchant()
        customer = customer_get(merchant=merchant, customer_id=data.pop("customer"), param="customer")
        order = installment_order_create(
            merchant=merchant, customer=customer, idempotency_key=request.idempotency_key, **data
        )
        return Response(OrderOut(order_get(merchant=merchant, order_id=order.pk)).data, status=201)


class InstallmentOrderDetailApi(APIView):
    @extend_schema(responses={200: OrderOut, **ERRORS_READ})
    def get(self, request, order_id):
        return Response(OrderOut(order_get(merchant=request.user.merchant, order_id=order_id)).data)


class InstallmentOrderCancelApi(APIView):
    class Input(serializers.Serializer):
        """No fields; parsed so that a malformed body is a 400 before anything changes."""

    @extend_schema(
        request=None,
        responses={200: OrderOut, **ERRORS_WRITE},
        summary="Cancel: open installments canceled, paid ones untouched",
    )
    @idempotent
    def post(self, request, order_id):
        parse(self.Input, request.data)
        order = order_get(merchant=request.user.merchant, order_id=order_id)
        installment_order_cancel(order=order)
        return Response(OrderOut(order_get(merchant=request.user.merchant, order_id=order_id)).data)


class InstallmentOrderPayApi(APIView):
    class Input(serializers.Serializer):
        amount = MinorUnitsField(required=False)

    @extend_schema(
        request=Input,
        responses={200: OrderOut, **ERRORS_MONEY},
        summary="Pay the next installment now, or (amount = the remaining balance) all of them",
    )
    @idempotent(calls_provider=True)
    def post(self, request, order_id):
        data = parse(self.Input, request.data)
        order = order_get(merchant=request.user.merchant, order_id=order_id)
        installment_order_pay(order=order, amount=data.get("amount"), idempotency_key=request.idempotency_key)
        return Response(OrderOut(order_get(merchant=request.user.merchant, order_id=order_id)).data)
