from django.contrib import admin, messages

from config.admin_tools import ReadOnlyAdmin, ReadOnlyTabularInline
from config.errors import Conflict

from .models import Delivery, DeliveryAttempt, InboundEvent, OutboundEvent, WebhookEndpoint
from .services import HandlerFailed, delivery_replay, endpoint_disable, endpoint_enable, inbound_event_process


@admin.register(InboundEvent)
class InboundEventAdmin(ReadOnlyAdmin):
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
    actions = ["reprocess"]

    @admin.action(description="Re-process selected events now")
    def reprocess(self, request, queryset):
        for event in queryset:
            try:
                status = inbound_event_process(event_id=event.pk, force=True)
                messages.info(request, f"{event}: {status}")
            except HandlerFailed as exc:
                messages.error(request, f"{event}: failed again: {exc}")


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


class EndpointKindFilter(admin.SimpleListFilter):
    title = "endpoint"
    parameter_name = "endpoint_kind"

    def lookups(self, request, model_admin):
        return [("merchant", "a merchant's"), ("global", "WEBHOOK_URLS (every merchant's events)")]

    def queryset(self, request, queryset):
        prefix = "" if queryset.model is WebhookEndpoint else "endpoint__"
        if self.value() in ("merchant", "global"):
            return queryset.filter(**{f"{prefix}merchant__isnull": self.value() == "global"})
        return queryset


@admin.register(Delivery)
class DeliveryAdmin(ReadOnlyAdmin):
    list_display = ["created_at", "event", "endpoint", "status", "attempts", "last_response_code", "next_attempt_at"]
    list_filter = ["status", EndpointKindFilter]
    search_fields = ["event__id", "endpoint__url", "event__type"]
    list_select_related = ["event", "endpoint"]
    inlines = [DeliveryAttemptInline]
    actions = ["replay_now"]

    @admin.action(description="Replay now")
    def replay_now(self, request, queryset):
        queued = 0
        for delivery in queryset.select_related("endpoint"):
            try:
                delivery_replay(delivery=delivery)
            except Conflict as exc:
                messages.warning(request, f"{delivery}: {exc}")
                continue
            queued += 1
            if not delivery.endpoint.enabled:
                messages.warning(request, f"{delivery}: queued, but its endpoint is disabled: re-enable it to send.")
        messages.success(request, f"{queued} deliveries queued.")


@admin.register(WebhookEndpoint)
class WebhookEndpointAdmin(admin.ModelAdmin):
    list_display = [
        "url",
        "merchant_or_global",
        "enabled",
        "consecutive_failures",
        "disabled_reason",
        "created_at",
        "deleted_at",
    ]
    list_filter = ["enabled", EndpointKindFilter, ("deleted_at", admin.EmptyFieldListFilter)]
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
    actions = ["enable", "disable"]
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

    @admin.display(description="merchant", ordering="merchant__name")
    def merchant_or_global(self, endpoint):
        return endpoint.merchant or "every merchant (WEBHOOK_URLS)"

    def get_readonly_fields(self, request, obj=None):
        # An operator endpoint's URL and events are WEBHOOK_URLS's (and its secret is
        # WEBHOOK_URLS_SECRET, never stored): edited there, not here.
        if obj is not None and obj.is_global:
            return [*self.readonly_fields, "url", "events"]
        return self.readonly_fields

    @admin.action(description="Re-enable selected endpoints (what they missed while disabled is sent)")
    def enable(self, request, queryset):
        enabled = 0
        for endpoint in queryset:
            try:
                endpoint_enable(endpoint=endpoint)
            except Conflict as exc:
                messages.warning(request, f"{endpoint}: {exc}")
                continue
            enabled += 1
        messages.success(
            request,
            f"{enabled} endpoints enabled; their undelivered and held deliveries go out with the next sweep.",
        )

    @admin.action(description="Disable selected endpoints")
    def disable(self, request, queryset):
        for endpoint in queryset:
            endpoint_disable(endpoint=endpoint, reason=f"disabled by staff ({request.user})")
        messages.success(request, f"{queryset.count()} endpoints disabled.")
