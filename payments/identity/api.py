from django_filters import rest_framework as filters
from drf_spectacular.utils import extend_schema
from rest_framework import serializers
from rest_framework.generics import ListAPIView
from rest_framework.permissions import AllowAny
from rest_framework.response import Response
from rest_framework.views import APIView

from config.api.docs import ERRORS_READ, ERRORS_WRITE
from config.api.fields import StrictCharField
from config.api.idempotency import idempotent
from config.api.outputs import ModelOut
from config.api.parsing import parse

from .models import Customer
from .selectors import customer_get, customer_list
from .services import customer_create


class CustomerOut(ModelOut):
    merchant = serializers.UUIDField(source="merchant_id", read_only=True)

    class Meta:
        model = Customer
        fields = ["id", "merchant", "external_id", "email", "name", "stripe_customer_id", "created_at"]


class CustomerFilter(filters.FilterSet):
    class Meta:
        model = Customer
        fields = ["external_id", "email"]


class CustomerListCreateApi(ListAPIView):
    serializer_class = CustomerOut
    filterset_class = CustomerFilter

    class Input(serializers.Serializer):
        external_id = StrictCharField(max_length=255)
        email = serializers.EmailField(required=False, default="")
        name = StrictCharField(required=False, default="", max_length=255)

    def get_queryset(self):
        if getattr(self, "swagger_fake_view", False):  # schema generation has no caller
            return Customer.objects.none()
        return customer_list(merchant=self.request.user.merchant).order_by("-created_at", "id")

    @extend_schema(responses={200: CustomerOut(many=True), **ERRORS_READ})
    def get(self, request, *args, **kwargs):
        return super().get(request, *args, **kwargs)

    @extend_schema(request=Input, responses={201: CustomerOut, **ERRORS_WRITE})
    @idempotent
    def post(self, request):
        data = parse(self.Input, request.data)
        customer = customer_create(merchant=request.user.require_merchant(), **data)
        return Response(CustomerOut(customer).data, status=201)


class CustomerDetailApi(APIView):
    @extend_schema(responses={200: CustomerOut, **ERRORS_READ})
    def get(self, request, customer_id):
        return Response(CustomerOut(customer_get(merchant=request.user.merchant, customer_id=customer_id)).data)


class PingApi(APIView):
    authentication_classes: list = []
    permission_classes = [AllowAny]
    throttle_classes: list = []

    @extend_schema(responses={200: {"type": "object", "properties": {"ok": {"type": "boolean"}}}})
    def get(self, request):
        return Response({"ok": True})
