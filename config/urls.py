from importlib import import_module

from django.contrib import admin
from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView

from config.health import healthz
from config.landing import landing
from payments.mock_checkout import mock_checkout
from webhooks.api import StripeWebhookApi

# One level of routes, not an include per app: a request walks past every route before
# its own, and a route that does not match costs a regex test, while an app's include
# that does not match costs a nested resolve and the Resolver404 it raises (an /api/v1/
# wallet read took 190 µs to resolve, most of it in the includes it missed).
api_v1 = [
    *import_module("webhooks.urls").urlpatterns,
    *import_module("payments.urls").urlpatterns,
    *import_module("installments.urls").urlpatterns,
    *import_module("wallets.urls").urlpatterns,
    *import_module("credits.urls").urlpatterns,
    *import_module("auctions.urls").urlpatterns,
]

urlpatterns = [
    path("api/v1/", include(api_v1)),  # first: nearly every request is an API call
    path("", landing, name="landing"),
    path("healthz", healthz, name="healthz"),
    path("health", healthz, name="health"),
    path("webhooks/stripe", StripeWebhookApi.as_view(), name="stripe-webhook-root"),
    path("pay/mock/<uuid:payment_id>", mock_checkout, name="mock-checkout"),
    path("pay/", include("payments.pay_urls")),
    path("admin/", admin.site.urls),
    path("api/schema/", SpectacularAPIView.as_view(), name="schema"),
    path("api/docs/", SpectacularSwaggerView.as_view(url_name="schema"), name="docs"),
    path("api-auth/", include("rest_framework.urls")),
]
