from django.contrib import admin
from django.db.models import Q
from django.utils.html import format_html_join

from config.admin_actions import OperatorActionsMixin
from config.admin_export import CsvExportMixin
from config.admin_tools import (
    ReadOnlyAdmin,
    ReadOnlyTabularInline,
    badge,
    flag_column,
    id_column,
    list_url,
    obj_link,
    related_links,
    short_id,
    status_column,
    text_column,
    words_filter,
)

from .admin_actions import DISABLE_ENDPOINT, ENABLE_ENDPOINT, REPROCESS, RESEND
from .models import Delivery, DeliveryAttempt, InboundEvent, OutboundEvent, WebhookEndpoint


@admin.register(InboundEvent)
class InboundEventAdmin(OperatorActionsMixin, CsvExportMixin, ReadOnlyAdmin):
    list_display = [
        "received_at",
        "provider",
        text_column("type", length=36),
        id_column("event_id", description="event id"),
        status_column(),
        flag_column("flagged", yes="flagged"),
        flag_column(
            "signature_verified",
            yes="verified",
            no="unverified",
            yes_tone="green",
            no_tone="amber",
            description="signature",
        ),
        "attempts",
        "next_attempt_at",
    ]
    list_filter = [
        "provider",
        "status",
        words_filter("flagged", title="flagged", yes="Flagged", no="Not flagged"),
        words_filter("signature_verified", title="signature", yes="Verified", no="Unverified"),
        "type",
        "received_at",
    ]
    search_fields = ["event_id", "type", "last_error", "flag_reason"]
    search_help_text = "Provider event id, type, error or flag reason."
    date_hierarchy = "received_at"
    csv_fields = [
        "id",
        "received_at",
        "provider",
        "event_id",
        "type",
        "status",
        "signature_verified",
        "flagged",
        "flag_reason",
        "attempts",
        "last_error",
        "processed_at",
        "next_attempt_at",
    ]
    readonly_fields = [
        "id",
        "provider",
        "type",
        "event_id",
        status_column(),
        flag_column(
            "signature_verified",
            yes="verified",
            no="unverified",
            yes_tone="green",
            no_tone="amber",
            description="signature",
        ),
        flag_column("flagged", yes="flagged", no="not flagged"),
        "flag_reason",
        "attempts",
        "last_error",
        "received_at",
        "processed_at",
        "next_attempt_at",
        "payload",
        "headers",
        "raw_body",
    ]
    list_filter = ["provider", "status", "flagged", "signature_verified", "type"]
    search_fields = ["event_id", "type", "last_error", "flag_reason"]
    date_hierarchy = "received_at"
    operator_actions = [REPROCESS]


class DeliveryAttemptInline(ReadOnlyTabularInline):
    model = DeliveryAttempt
    verbose_name = "attempt"
    verbose_name_plural = "attempts"
    fields = ["number", "started_at", "response_code", "latency_ms", "response_body", "error"]
    readonly_fields = fields


class DeliveryInline(ReadOnlyTabularInline):
    model = Delivery
    verbose_name = "delivery"
    verbose_name_plural = "deliveries (one per endpoint)"
    fields = ["endpoint", status_column(), "attempts", "last_response_code", "next_attempt_at", "delivered_at"]
    readonly_fields = fields
    show_change_link = True


class SubjectFilter(admin.SimpleListFilter):
    """?subject=<id>: the events about one object (its id, or its payment's, in the
    event's data). Linked from payment, charge and order pages; not a sidebar choice."""

    title = "subject"
    parameter_name = "subject"

    def lookups(self, request, model_admin):
        return []

    def has_output(self):
        return False

    def queryset(self, request, queryset):
        if self.value():
            return queryset.filter(Q(data__id=self.value()) | Q(data__payment=self.value()))
        return queryset


@admin.register(OutboundEvent)
class OutboundEventAdmin(CsvExportMixin, ReadOnlyAdmin):
    list_display = ["created_at", "type", "merchant", "subject", "deliveries_status", id_column()]
    list_filter = [SubjectFilter, "type", ("merchant", admin.RelatedOnlyFieldListFilter), "created_at"]
    search_fields = ["=id", "type", "merchant__name"]
    search_help_text = "Event id (exact), type or merchant name."
    list_select_related = ["merchant"]
    date_hierarchy = "created_at"
    inlines = [DeliveryInline]
    readonly_fields = ["id", "type", "merchant", "created_at", "data"]

    def get_queryset(self, request):
        return super().get_queryset(request).prefetch_related("deliveries")

    @admin.display(description="about")
    def subject(self, obj):
        return short_id(obj.data.get("id") if isinstance(obj.data, dict) else None)

    @admin.display(description="deliveries")
    def deliveries_status(self, obj):
        statuses = [d.status for d in obj.deliveries.all()]
        if not statuses:
            return "no endpoint"
        return format_html_join(" ", "{}", ((badge(s),) for s in statuses))


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
class DeliveryAdmin(OperatorActionsMixin, CsvExportMixin, ReadOnlyAdmin):
    list_display = [
        "created_at",
        "event_link",
        text_column("endpoint__url", length=30, description="endpoint"),
        status_column(),
        "attempts",
        "last_code",
        "next_attempt_at",
        "delivered_at",
    ]
    list_filter = [
        "status",
        EndpointKindFilter,
        "event__type",
        ("endpoint", admin.RelatedOnlyFieldListFilter),
        "created_at",
    ]
    search_fields = ["=event__id", "endpoint__url", "event__type"]
    search_help_text = "Event id (exact), endpoint URL or event type."
    list_select_related = ["event", "endpoint"]
    date_hierarchy = "created_at"
    inlines = [DeliveryAttemptInline]
    readonly_fields = [
        "id",
        "event",
        "endpoint",
        status_column(),
        "attempts",
        "last_response_code",
        "last_error",
        "next_attempt_at",
        "claimed_at",
        "delivered_at",
        "created_at",
    ]
    csv_fields = [
        "id",
        "created_at",
        "event",
        "event__type",
        "endpoint",
        "endpoint__url",
        "status",
        "attempts",
        "last_response_code",
        "last_error",
        "next_attempt_at",
        "delivered_at",
    ]

    @admin.display(description="HTTP", ordering="last_response_code")
    def last_code(self, obj):
        return obj.last_response_code or "-"

    @admin.display(description="event", ordering="event__type")
    def event_link(self, obj):
        return obj_link(obj.event, obj.event.type)

    operator_actions = [RESEND]


@admin.register(WebhookEndpoint)
class WebhookEndpointAdmin(OperatorActionsMixin, admin.ModelAdmin):
    list_display = [
        text_column("url", length=40),
        "merchant_or_global",
        flag_column("enabled", yes="enabled", no="disabled", yes_tone="green", no_tone="red"),
        "consecutive_failures",
        text_column("disabled_reason"),
        "created_at",
        "deleted_at",
    ]
    list_filter = [
        words_filter("enabled", title="enabled", yes="Enabled", no="Disabled"),
        EndpointKindFilter,
        ("deleted_at", admin.EmptyFieldListFilter),
    ]
    search_fields = ["url", "merchant__name"]
    list_select_related = ["merchant"]
    # `enabled` changes only through the actions, which go through the services.
    readonly_fields = [
        "merchant",
        "secret",
        "enabled_words",
        "disabled_reason",
        "consecutive_failures",
        "created_at",
        "deleted_at",
        "related",
    ]
    operator_actions = [ENABLE_ENDPOINT, DISABLE_ENDPOINT]
    fields = [
        "merchant",
        "url",
        "events",
        "description",
        "enabled_words",
        "disabled_reason",
        "consecutive_failures",
        "created_at",
        "deleted_at",
        "related",
    ]

    @admin.display(description="enabled")
    def enabled_words(self, obj):
        return flag_column("enabled", yes="enabled", no="disabled", yes_tone="green", no_tone="red")(obj)

    @admin.display(description="links")
    def related(self, obj):
        return related_links(
            [("Deliveries", list_url("webhooks.delivery", endpoint__id__exact=obj.pk), obj.deliveries.count())]
        )

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
