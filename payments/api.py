from django_filters import rest_framework as filters
from drf_spectacular.utils import extend_schema, inline_serializer
from rest_framework import serializers
from rest_framework.generics import ListAPIView
from rest_framework.response import Response
from rest_framework.views import APIView

from config.api.docs import ERRORS_MONEY, ERRORS_READ, ERRORS_WRITE
from config.api.fields import CurrencyField, MetadataField, MinorUnitsField, StrictCharField
from config.api.idempotency import idempotent
from config.api.outputs import ModelOut
from config.api.parsing import parse
from payments.charges import charge_create
from payments.identity.selectors import customer_get
from payments.models import Charge, Payment, PaymentEvent, Refund
from payments.selectors import payment_get, payment_list
from payments.services import INTERNAL_DETAIL, payment_cancel, payment_create, payment_refund
from payments.splits import splits_validate


class PaymentOut(ModelOut):
    customer = serializers.UUIDField(source="customer_id", allow_null=True)
    client_secret = serializers.SerializerMethodField()
    failure_reason = serializers.SerializerMethodField()

    class Meta:
        model = Payment
        fields = [
            "id",
            "status",
            "amount",
            "amount_refunded",
            "currency",
            "order_id",
            "customer",
            "provider",
            "provider_payment_id",
            "payment_url",
            "client_secret",
            "return_url",
            "description",
            "metadata",
            "split_instructions",
            "failure_reason",
            "created_at",
            "updated_at",
        ]

    def get_client_secret(self, obj) -> str | None:
        return obj.client_secret or None

    def get_failure_reason(self, obj) -> str | None:
        return obj.failure_reason or None


class RefundOut(ModelOut):
    payment = serializers.UUIDField(source="payment_id")

    class Meta:
        model = Refund
        fields = [
            "id",
            "payment",
            "amount",
            "wallet_amount",
            "provider_amount",
            "status",
            "reason",
            "provider_refund_id",
            "created_at",
        ]


class PaymentFilter(filters.FilterSet):
    status = filters.ChoiceFilter(choices=Payment.Status.choices)
    customer = filters.UUIDFilter(field_name="customer_id")

    class Meta:
        model = Payment
        fields = ["status", "order_id", "customer"]


class PaymentListCreateApi(ListAPIView):
    serializer_class = PaymentOut
    filterset_class = PaymentFilter

    class Input(serializers.Serializer):
        order_id = StrictCharField(max_length=255)
        amount = MinorUnitsField()
        currency = CurrencyField()
        customer = serializers.UUIDField(required=False, allow_null=True)
        provider = StrictCharField(required=False, allow_blank=True, max_length=30)
        description = StrictCharField(required=False, default="", allow_blank=True, max_length=1000)
        metadata = MetadataField(required=False, default=dict)
        return_url = serializers.URLField(required=False, default="", allow_blank=True, max_length=2000)
        split_instructions = serializers.JSONField(required=False, default=list)

    def get_queryset(self):
        if getattr(self, "swagger_fake_view", False):
            return Payment.objects.none()
        return payment_list(merchant=self.request.user.merchant).order_by("-created_at", "id")

    @extend_schema(
        request=Input,
        responses={201: PaymentOut, **ERRORS_MONEY},
        summary="Create a payment (Idempotency-Key honoured)",
    )
    @idempotent(calls_provider=True)
    def post(self, request):
        data = parse(self.Input, request.data)
        merchant = request.user.require_merchant()
        customer = data.pop("customer", None)
        if customer:
            customer = customer_get(merchant=merchant, customer_id=customer, param="customer")
        data["split_instructions"] = splits_validate(instructions=data["split_instructions"], amount=data["amount"])
        payment = payment_create(
            merchant=merchant, customer=customer, idempotency_key=request.idempotency_key or "", **data
        )
        return Response(PaymentOut(payment).data, status=201)


class PaymentDetailApi(APIView):
    @extend_schema(responses={200: PaymentOut, **ERRORS_READ})
    def get(self, request, payment_id):
        return Response(PaymentOut(payment_get(merchant=request.user.merchant, payment_id=payment_id)).data)


class PaymentTrackingApi(APIView):
    class EventOut(ModelOut):
        # null for an event that is not a state change (provider.payment_created,
        # refund.requested, provider.mismatch, ...), never "".
        status = serializers.CharField(source="to_status", allow_null=True)
        from_status = serializers.CharField(allow_null=True)
        data = serializers.SerializerMethodField()

        class Meta:
            model = PaymentEvent
            fields = ["type", "status", "from_status", "source", "flagged", "created_at", "data"]

        def to_representation(self, instance):
            body = super().to_representation(instance)
            body["status"] = body["status"] or None
            body["from_status"] = body["from_status"] or None
            return body

        def get_data(self, obj) -> dict:
            # What staff may read (an exception's full text) stays in the admin.
            return {key: value for key, value in (obj.data or {}).items() if key != INTERNAL_DETAIL}

    @extend_schema(
        responses={
            200: inline_serializer(
                name="PaymentTracking",
                fields={
                    "payment": serializers.UUIDField(),
                    "status": serializers.CharField(),
                    "events": EventOut(many=True),
                },
            ),
            **ERRORS_READ,
        }
    )
    def get(self, request, payment_id):
        payment = payment_get(merchant=request.user.merchant, payment_id=payment_id)
        events = payment.timeline.order_by("created_at", "id")
        return Response(
            {"payment": str(payment.pk), "status": payment.status, "events": self.EventOut(events, many=True).data}
        )


class PaymentCancelApi(APIView):
    class Input(serializers.Serializer):
        """No fields; parsed so that a malformed body is a 400 before anything changes."""

    @extend_schema(request=None, responses={200: PaymentOut, **ERRORS_WRITE}, summary="Cancel a pending payment")
    @idempotent(calls_provider=True)
    def post(self, request, payment_id):
        parse(self.Input, request.data)
        payment = payment_get(merchant=request.user.merchant, payment_id=payment_id)
        return Response(PaymentOut(payment_cancel(payment=payment, idempotency_key=request.idempotency_key)).data)


class PaymentRefundApi(APIView):
    class Input(serializers.Serializer):
        amount = MinorUnitsField(required=False)
        reason = StrictCharField(required=False, default="", allow_blank=True, max_length=500)

    @extend_schema(
        request=Input, responses={201: RefundOut, **ERRORS_MONEY}, summary="Refund all or part of what is left"
    )
    @idempotent(calls_provider=True)
    def post(self, request, payment_id):
        data = parse(self.Input, request.data)
        payment = payment_get(merchant=request.user.merchant, payment_id=payment_id)
        refund = payment_refund(
            payment=payment, amount=data.get("amount"), reason=data["reason"], idempotency_key=request.idempotency_key
        )
        return Response(RefundOut(refund).data, status=201)


class ChargeOut(ModelOut):
    customer = serializers.UUIDField(source="customer_id")
    payment = serializers.UUIDField(source="payment_id")
    failure_reason = serializers.SerializerMethodField()

    class Meta:
        model = Charge
        fields = [
            "id",
            "status",
            "amount",
            "currency",
            "wallet_amount",
            "external_amount",
            "payment",
            "customer",
            "provider",
            "provider_charge_id",
            "split_instructions",
            "description",
            "metadata",
            "failure_reason",
            "created_at",
        ]

    def get_failure_reason(self, obj) -> str | None:
        return obj.failure_reason or None


class ChargeFilter(filters.FilterSet):
    status = filters.ChoiceFilter(choices=Charge.Status.choices)
    customer = filters.UUIDFilter(field_name="customer_id")

    class Meta:
        model = Charge
        fields = ["status", "customer"]


class ChargeListCreateApi(ListAPIView):
    """Wallet first, the rest from the saved card. A declined card is a 201 with status
    `failed` (the attempt is recorded, the wallet untouched); a short wallet and no card
    is a 402 with nothing recorded."""

    serializer_class = ChargeOut
    filterset_class = ChargeFilter

    class Input(serializers.Serializer):
        customer = serializers.UUIDField()
        amount = MinorUnitsField()
        currency = CurrencyField()
        description = StrictCharField(required=False, default="", allow_blank=True, max_length=1000)
        split_instructions = serializers.JSONField(required=False, default=list)
        metadata = MetadataField(required=False, default=dict)

    def get_queryset(self):
        if getattr(self, "swagger_fake_view", False):
            return Charge.objects.none()
        qs = Charge.objects.order_by("-created_at", "id")
        merchant = self.request.user.merchant
        return qs if merchant is None else qs.filter(merchant=merchant)

    @extend_schema(request=Input, responses={201: ChargeOut, **ERRORS_MONEY}, summary="Charge a customer")
    @idempotent(calls_provider=True)
    def post(self, request):
        data = parse(self.Input, request.data)
        merchant = request.user.require_merchant()
        customer = customer_get(merchant=merchant, customer_id=data.pop("customer"), param="customer")
        charge = charge_create(merchant=merchant, customer=customer, idempotency_key=request.idempotency_key, **data)
        return Response(ChargeOut(charge).data, status=201)
