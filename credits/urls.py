from django.urls import path

from .api import (
    CreditsCheckoutApi,
    CreditsDebitApi,
    CreditsGrantApi,
    CreditsLedgerApi,
    MeCreditsApi,
    MeHelloApi,
    UseCreditsApi,
)
from .mock_checkout import credits_mock_checkout

urlpatterns = [
    path("me/hello", MeHelloApi.as_view(), name="me-hello"),
    path("me/credits", MeCreditsApi.as_view(), name="me-credits"),
    path("credits/debit", CreditsDebitApi.as_view(), name="credits-debit"),
    path("use-credits", UseCreditsApi.as_view(), name="use-credits"),
    path("credits/grants", CreditsGrantApi.as_view(), name="credits-grants"),
    path("credits/ledger", CreditsLedgerApi.as_view(), name="credits-ledger"),
    path("credits/checkout", CreditsCheckoutApi.as_view(), name="credits-checkout"),
    path("credits/checkout/mock/<uuid:checkout_id>", credits_mock_checkout, name="credits-mock-checkout"),
]
