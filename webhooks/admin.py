from django.contrib import admin

from config.admin_actions import OperatorActionsMixin
from config.admin_tools import ReadOnlyAdmin, ReadOnlyTabularInline

from .admin_actions import DISABLE_ENDPOINT, ENABLE_ENDPOINT, REPROCESS, RESEND
from .models import Delivery, DeliveryAttempt, InboundEvent, OutboundEvent, WebhookEndpoint


@admin.register(InboundEvent)
class InboundEventAdmin(OperatorActionsMixin, ReadOnlyAdmin):
    list_display = [
        "received_at",
        "provider",
        "type",
        "event_id",
        "status",
        "flagged",
        "signature_verified",
        "attempts",
        "next_attempt_at",
    ]
    list_filter = ["provider", "status", "flagged", "signature_verified", "type"]
    search_fields = ["event_id", "type", "last_error", "flag_reason"]
    date_hierarchy = "received_at"
    operator_actions = [REPROCESS]


class DeliveryAttemptInline(ReadOnlyTabularInline):
    model = DeliveryAttempt
    readonly_fields = ["number", "started_at", "response_code", "latency_ms", "response_body", "error"]


class DeliveryInline(ReadOnlyTabularInline):
    model = Delivery
    fields = ["endpoint", "status", "attempts", "last_response_code", "next_attempt_at", "delivered_at"]
    readonly_fields = fields
    show_change_link = True


@admin.register(OutboundEvent)
class OutboundEventAdmin(ReadOnlyAdmin):
    list_display = ["created_at", "type", "merchant", "id"]
    list_filter = ["type"]
    search_fields = ["id", "type", "merchant__name"]
    list_select_related = ["merchant"]
    date_hierarchy = "created_at"
    inlines = [DeliveryInline]


@admin.register(Delivery)
class DeliveryAdmin(OperatorActionsMixin, ReadOnlyAdmin):
    list_display = ["created_at", "event", "endpoint", "status", "attempts", "last_response_code", "next_attempt_at"]
    list_filter = ["status"]
    search_fields = ["event__id", "endpoint__url", "event__type"]
    list_select_related = ["event", "endpoint"]
    inlines = [DeliveryAttemptInline]
    operator_actions = [RESEND]


@admin.register(WebhookEndpoint)
class WebhookEndpointAdmin(OperatorActionsMixin, admin.ModelAdmin):
    list_display = ["url", "merchant", "enabled", "consecutive_failures", "disabled_reason", "created_at", "deleted_at"]
    list_filter = ["enabled", ("deleted_at", admin.EmptyFieldListFilter)]
    search_fields = ["url", "merchant__name"]
    list_select_related = ["merchant"]
    # `enabled` changes only through the actions, which go through the services.
    readonly_fields = [
        "merchant",
        "secret",
        "enabled",
        "disabled_reason",
        "consecutive_failures",
        "created_at",
        "deleted_at",
    ]
    operator_actions = [ENABLE_ENDPOINT, DISABLE_ENDPOINT]
    fields = [
        "merchant",
        "url",
        "events",
        "description",
        "enabled",
        "disabled_reason",
        "consecutive_failures",
        "created_at",
        "deleted_at",
    ]

    def has_add_permission(self, request):
        return False  # merchants register endpoints through the API (the secret is shown once there)
