from django.urls import path

from wallets.api.views import (
    HoldCaptureApi,
    HoldCreateApi,
    HoldVoidApi,
    WalletCreateApi,
    WalletCreditApi,
    WalletDebitApi,
    WalletDetailApi,
    WalletLedgerApi,
)

urlpatterns = [
    path("wallets", WalletCreateApi.as_view(), name="wallet-create"),
    path("wallets/<str:customer_id>", WalletDetailApi.as_view(), name="wallet-detail"),
    path("wallets/<str:customer_id>/ledger", WalletLedgerApi.as_view(), name="wallet-ledger"),
    path("wallets/<str:customer_id>/credit", WalletCreditApi.as_view(), name="wallet-credit"),
    path("wallets/<str:customer_id>/debit", WalletDebitApi.as_view(), name="wallet-debit"),
    path("wallets/<str:customer_id>/holds", HoldCreateApi.as_view(), name="wallet-hold-create"),
    path("holds/<str:hold_id>/capture", HoldCaptureApi.as_view(), name="hold-capture"),
    path("holds/<str:hold_id>/void", HoldVoidApi.as_view(), name="hold-void"),
]
