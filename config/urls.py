from django.contrib import admin
from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView

from config.health import healthz
from config.landing import landing
from payments.mock_checkout import mock_checkout
from webhooks.api import StripeWebhookApi

api_v1 = [
    path("", include("webhooks.urls")),
    path("", include("payments.urls")),
    path("", include("installments.urls")),
    path("", include("wallets.urls")),
    path("", include("credits.urls")),
    path("", include("auctions.urls")),
]

urlpatterns = [
    path("", landing, name="landing"),
    path("healthz", healthz, name="healthz"),
    path("health", healthz, name="health"),
    path("webhooks/stripe", StripeWebhookApi.as_view(), name="stripe-webhook-root"),
    path("pay/mock/<uuid:payment_id>", mock_checkout, name="mock-checkout"),
    path("pay/", include("payments.pay_urls")),
    path("admin/", admin.site.urls),
    path("api/schema/", SpectacularAPIView.as_view(), name="schema"),
    path("api/docs/", SpectacularSwaggerView.as_view(url_name="schema"), name="docs"),
    path("api/v1/", include(api_v1)),
    path("api-auth/", include("rest_framework.urls")),
]
