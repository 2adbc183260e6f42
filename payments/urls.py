from django.urls import path

from payments.identity.api import CustomerDetailApi, CustomerListCreateApi, PingApi

urlpatterns = [
    path("payments/ping", PingApi.as_view(), name="payments-ping"),
    path("customers", CustomerListCreateApi.as_view(), name="customer-list"),
    path("customers/<str:customer_id>", CustomerDetailApi.as_view(), name="customer-detail"),
]
