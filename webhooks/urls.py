from django.urls import path

from .api import (
    OutboundEventListApi,
    ProviderWebhookApi,
    StripeWebhookApi,
    WebhookEndpointDetailApi,
    WebhookEndpointListCreateApi,
)

# Mounted under /api/v1/ (config/urls.py); /webhooks/stripe is also mounted at the root.
urlpatterns = [
    path("webhooks/stripe", StripeWebhookApi.as_view(), name="stripe-webhook"),
    path("payments/webhook", ProviderWebhookApi.as_view(), name="provider-webhook"),
    path("webhook-endpoints", WebhookEndpointListCreateApi.as_view(), name="webhook-endpoint-list"),
    path("webhook-endpoints/<str:endpoint_id>", WebhookEndpointDetailApi.as_view(), name="webhook-endpoint-detail"),
    path("webhooks", OutboundEventListApi.as_view(), name="outbound-event-list"),
]
