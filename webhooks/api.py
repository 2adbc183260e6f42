from django.db.models import Prefetch
from django_filters import rest_framework as filters
from drf_spectacular.utils import extend_schema, inline_serializer
from rest_framework import serializers
from rest_framework.generics import ListAPIView
from rest_framework.permissions import AllowAny
from rest_framework.response import Response
from rest_framework.views import APIView

from config.api.docs import ERROR_UNAVAILABLE, ERRORS_READ, ERRORS_WRITE
from config.api.fields import CurrencyField, MinorUnitsField
from config.api.idempotency import idempotent
from config.api.outputs import ModelOut
from config.api.parsing import parse

from . import inbound
from .models import Delivery, OutboundEvent, WebhookEndpoint
from .services import endpoint_create, endpoint_delete, endpoint_get

ReceivedOut = inline_serializer(
    name="WebhookReceived",
    fields={
        "received": serializers.BooleanField(),
        "event": serializers.UUIDField(),
        "duplicate": serializers.BooleanField(),
        "status": serializers.CharField(),
    },
)


def _received(event, created: bool) -> Response:
    return Response({"received": True, "event": str(event.pk), "duplicate": not created, "status": event.status})


class _InboundApi(APIView):
    """Providers authenticate by signature, not by API key."""

    authentication_classes: list = []
    permission_classes = [AllowAny]
    throttle_classes: list = []


class StripeWebhookApi(_InboundApi):
    @extend_schema(
        request={"application/json": {"type": "object", "description": "A Stripe event, signed (Stripe-Signature)."}},
        responses={200: ReceivedOut, 400: ERRORS_WRITE[400], 503: ERROR_UNAVAILABLE},
        summary="Receive a Stripe event (target of `stripe listen --forward-to`)",
    )
    def post(self, request):
        return _received(*inbound.receive_stripe(body=inbound.request_body(request), headers=request.headers))


class ProviderNotificationIn(serializers.Serializer):
    provider = serializers.CharField(max_length=30)
    provider_payment_id = serializers.CharField(max_length=255)
    status = serializers.RegexField(r"^[a-z_]{1,30}$")
    amount = MinorUnitsField()
    currency = CurrencyField()
    id = serializers.CharField(max_length=255, required=False)
    failure_reason = serializers.CharField(
        max_length=1000, required=False, allow_blank=True, help_text="Why it failed (a failed status), for staff."
    )


def receive_provider_notification(*, body: bytes, headers):
    """API.md's provider notification: verify, check its shape, store, enqueue."""
    return inbound.receive_provider(
        body=body, headers=headers, validate=lambda payload: parse(ProviderNotificationIn, payload)
    )


class ProviderWebhookApi(_InboundApi):
    Input = ProviderNotificationIn

    @extend_schema(
        request=Input,
        responses={200: ReceivedOut, 400: ERRORS_WRITE[400]},
        summary="Receive a non-Stripe provider's signed notification (X-Paydesk-Signature)",
    )
    def post(self, request):
        return _received(*receive_provider_notification(body=inbound.request_body(request), headers=request.headers))


class EndpointOut(ModelOut):
    class Meta:
        model = WebhookEndpoint
        fields = [
            "id",
            "url",
            "events",
            "description",
            "enabled",
            "disabled_reason",
            "consecutive_failures",
            "created_at",
        ]


class EndpointCreatedOut(EndpointOut):
    class Meta(EndpointOut.Meta):
        fields = [*EndpointOut.Meta.fields, "secret"]


EndpointDeletedOut = inline_serializer(
    name="WebhookEndpointDeleted", fields={"id": serializers.UUIDField(), "deleted": serializers.BooleanField()}
)


class WebhookEndpointListCreateApi(ListAPIView):
    serializer_class = EndpointOut

    class Input(serializers.Serializer):
        url = serializers.URLField(max_length=2000)
        events = serializers.ListField(child=serializers.CharField(max_length=100), allow_empty=False, max_length=100)
        description = serializers.CharField(max_length=255, required=False, default="")

    def get_queryset(self):
        if getattr(self, "swagger_fake_view", False):
            return WebhookEndpoint.objects.none()
        # Operator endpoints (WEBHOOK_URLS) are the operator's, not any merchant's: never listed.
        qs = WebhookEndpoint.objects.filter(deleted_at__isnull=True, merchant__isnull=False).order_by(
            "-created_at", "id"
        )
        merchant = self.request.user.merchant
        return qs if merchant is None else qs.filter(merchant=merchant)

    @extend_schema(
        request=Input,
        responses={201: EndpointCreatedOut, **ERRORS_WRITE},
        summary="Register an endpoint; the signing secret is shown once, here",
    )
    @idempotent
    def post(self, request):
        data = parse(self.Input, request.data)
        endpoint = endpoint_create(merchant=request.user.require_merchant(), **data)
        return Response(EndpointCreatedOut(endpoint).data, status=201)


class WebhookEndpointDetailApi(APIView):
    @extend_schema(responses={200: EndpointOut, **ERRORS_READ})
    def get(self, request, endpoint_id):
        return Response(EndpointOut(endpoint_get(merchant=request.user.merchant, endpoint_id=endpoint_id)).data)

    @extend_schema(
        responses={200: EndpointDeletedOut, **ERRORS_READ},
        summary="Delete the endpoint: nothing more is sent to it, and it is gone from the API",
    )
    def delete(self, request, endpoint_id):
        endpoint = endpoint_delete(endpoint=endpoint_get(merchant=request.user.merchant, endpoint_id=endpoint_id))
        return Response({"id": str(endpoint.pk), "deleted": True})


# API.md's delivery statuses. A delivery held for a disabled endpoint is `pending` here:
# not sent yet, and it will be once the endpoint is enabled again.
DELIVERY_STATUSES = [
    Delivery.Status.PENDING,
    Delivery.Status.DELIVERED,
    Delivery.Status.RETRYING,
    Delivery.Status.FAILED,
]


class DeliveryStatusField(serializers.ChoiceField):
    def __init__(self, **kwargs):
        super().__init__(choices=[(s.value, s.value) for s in DELIVERY_STATUSES], read_only=True, **kwargs)

    def to_representation(self, value):
        return Delivery.Status.PENDING.value if value == Delivery.Status.HELD else str(value)


class DeliveryOut(ModelOut):
    endpoint = serializers.UUIDField(source="endpoint_id")
    status = DeliveryStatusField()
    url = serializers.CharField(source="endpoint.url")
    last_response_code = serializers.IntegerField(allow_null=True)

    class Meta:
        model = Delivery
        fields = [
            "id",
            "endpoint",
            "url",
            "status",
            "attempts",
            "last_response_code",
            "last_error",
            "next_attempt_at",
            "delivered_at",
        ]


class OutboundEventOut(ModelOut):
    deliveries = DeliveryOut(many=True)

    class Meta:
        model = OutboundEvent
        fields = ["id", "type", "created_at", "data", "deliveries"]


class OutboundEventFilter(filters.FilterSet):
    status = filters.ChoiceFilter(
        choices=[(s.value, s.value) for s in DELIVERY_STATUSES],
        method="filter_status",
        help_text="Events with a delivery in this status.",
    )

    class Meta:
        model = OutboundEvent
        fields = ["type", "status"]

    def filter_status(self, queryset, name, value):
        statuses = [value, Delivery.Status.HELD] if value == Delivery.Status.PENDING else [value]
        return queryset.filter(deliveries__status__in=statuses, deliveries__endpoint__merchant__isnull=False).distinct()


class OutboundEventListApi(ListAPIView):
    """The merchant's outbound events, newest first, with each of its endpoints' delivery
    status. Deliveries to the operator's endpoints (WEBHOOK_URLS) are not shown: their URLs
    and outcomes are the operator's (the admin shows them)."""

    serializer_class = OutboundEventOut
    filterset_class = OutboundEventFilter

    def get_queryset(self):
        if getattr(self, "swagger_fake_view", False):
            return OutboundEvent.objects.none()
        qs = OutboundEvent.objects.order_by("-created_at", "id").prefetch_related(
            Prefetch(
                "deliveries",
                queryset=Delivery.objects.filter(endpoint__merchant__isnull=False).select_related("endpoint"),
            )
        )
        merchant = self.request.user.merchant
        return qs if merchant is None else qs.filter(merchant=merchant)
