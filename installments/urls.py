from django.urls import path

from installments.api import (
    InstallmentOrderCancelApi,
    InstallmentOrderDetailApi,
    InstallmentOrderListCreateApi,
    InstallmentOrderPayApi,
)

urlpatterns = [
    path("installments/orders", InstallmentOrderListCreateApi.as_view(), name="installment-order-list"),
    path("installments/orders/<str:order_id>", InstallmentOrderDetailApi.as_view(), name="installment-order-detail"),
    path(
        "installments/orders/<str:order_id>/cancel",
        InstallmentOrderCancelApi.as_view(),
        name="installment-order-cancel",
    ),
    path("installments/orders/<str:order_id>/pay", InstallmentOrderPayApi.as_view(), name="installment-order-pay"),
]
