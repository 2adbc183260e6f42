from django.urls import path

from payments.api import (
    ChargeListCreateApi,
    PaymentCancelApi,
    PaymentDetailApi,
    PaymentListCreateApi,
    PaymentRefundApi,
    PaymentTrackingApi,
)
from payments.identity.api import CustomerDetailApi, CustomerListCreateApi, PingApi

urlpatterns = [
    path("payments/ping", PingApi.as_view(), name="payments-ping"),
    path("payments", PaymentListCreateApi.as_view(), name="payment-list"),
    path("payments/<str:payment_id>", PaymentDetailApi.as_view(), name="payment-detail"),
    path("payments/<str:payment_id>/show", PaymentDetailApi.as_view(), name="payment-show"),
    path("payments/<str:payment_id>/tracking", PaymentTrackingApi.as_view(), name="payment-tracking"),
    path("payments/<str:payment_id>/cancel", PaymentCancelApi.as_view(), name="payment-cancel"),
    path("payments/<str:payment_id>/refunds", PaymentRefundApi.as_view(), name="payment-refunds"),
    path("charges", ChargeListCreateApi.as_view(), name="charge-list"),
    path("customers", CustomerListCreateApi.as_view(), name="customer-list"),
    path("customers/<str:customer_id>", CustomerDetailApi.as_view(), name="customer-detail"),
]
