from datetime import timedelta

from django.contrib import admin
from django.utils import timezone

from config.admin_actions import OperatorActionsMixin
from config.admin_export import CsvExportMixin
from config.admin_tools import (
    ActionsOnlyAdmin,
    MoneyTotalsMixin,
    ReadOnlyAdmin,
    ReadOnlyTabularInline,
    id_column,
    list_url,
    money_column,
    obj_link,
    related_links,
    status_column,
    text_column,
)
from installments.models import Installment, InstallmentCharge, InstallmentEvent, InstallmentOrder

from .admin_actions import CANCEL_ORDER, POSTPONE, RETRY_NOW


class InstallmentInline(ReadOnlyTabularInline):
    model = Installment
    verbose_name = "installment"
    verbose_name_plural = "schedule"
    fields = [
        "sequence",
        "due_date",
        money_column("amount", currency="order__currency"),
        status_column(),
        "attempts",
        "next_attempt_at",
        "claim_source",
        "last_error",
        "paid_at",
    ]
    readonly_fields = fields
    ordering = ["sequence"]
    show_change_link = True


class TimelineInline(ReadOnlyTabularInline):
    model = InstallmentEvent
    verbose_name = "timeline event"
    verbose_name_plural = "timeline"
    fields = ["created_at", "type", "installment", "from_status", "to_status", "source", "data"]
    readonly_fields = fields
    ordering = ["created_at", "id"]


class ChargeAttemptInline(ReadOnlyTabularInline):
    model = InstallmentCharge
    verbose_name = "charge attempt"
    verbose_name_plural = "charge attempts"
    fields = ["attempt", "charge", "created_at"]
    readonly_fields = fields


class AttentionFilter(admin.SimpleListFilter):
    title = "needs attention"
    parameter_name = "attention"

    def lookups(self, request, model_admin):
        return [
            ("overdue", "Overdue"),
            ("failing", "Failing (in dunning)"),
            ("defaulted", "Defaulted"),
            ("due_today", "Due today"),
            ("due_soon", "Due in the next 30 days"),
        ]

    def queryset(self, request, queryset):
        if self.value() == "overdue":
            return queryset.filter(
                status="active",
                installments__status__in=["scheduled", "failed"],
                installments__due_date__lt=timezone.localdate(),
            ).distinct()
        if self.value() == "failing":
            return queryset.filter(status="active", installments__status="failed").distinct()
        if self.value() == "defaulted":
            return queryset.filter(status="defaulted")
        if self.value() in ("due_today", "due_soon"):  # the dashboard's installment figures
            today = timezone.localdate()
            days = 1 if self.value() == "due_today" else 30
            return queryset.filter(
                installments__status__in=["scheduled", "processing", "failed"],
                installments__due_date__gte=today,
                installments__due_date__lt=today + timedelta(days=days),
            ).distinct()
        return queryset


@admin.register(InstallmentOrder)
class InstallmentOrderAdmin(OperatorActionsMixin, CsvExportMixin, MoneyTotalsMixin, ActionsOnlyAdmin):
    list_display = [
        id_column(),
        "merchant",
        "customer",
        money_column("amount"),
        money_column("down_payment", description="down payment"),
        "schedule",
        status_column(),
        "created_at",
    ]
    list_filter = [
        AttentionFilter,
        "status",
        "currency",
        ("merchant", admin.RelatedOnlyFieldListFilter),
        "created_at",
    ]
    search_fields = ["=id", "customer__external_id", "customer__email", "description"]
    search_help_text = "Order id, customer id or email, description."
    list_select_related = ["merchant", "customer"]
    date_hierarchy = "created_at"
    raw_id_fields = ["merchant", "customer", "down_payment_charge"]
    readonly_fields = [
        "id",
        "merchant",
        "customer",
        money_column("amount", raw=True),
        money_column("down_payment", raw=True, description="down payment"),
        "down_payment_charge",
        "schedule",
        status_column(),
        "description",
        "metadata",
        "early_payments",
        "idempotency_key",
        "created_at",
        "updated_at",
        "related",
    ]
    inlines = [InstallmentInline, TimelineInline]
    money_totals = ("amount",)
    csv_money = {"amount": "currency", "down_payment": "currency"}

    @admin.display(description="schedule", ordering="interval")
    def schedule(self, obj):
        if not obj.interval:
            return "explicit dates"
        return f"every {obj.interval}" if obj.interval_count == 1 else f"every {obj.interval_count} {obj.interval}s"

    @admin.display(description="links")
    def related(self, obj):
        return related_links(
            [
                ("Installments", list_url("installments.installment", order__id__exact=obj.pk), None),
                ("Webhook events", list_url("webhooks.outboundevent", subject=str(obj.pk)), None),
            ]
        )

    operator_actions = [RETRY_NOW, CANCEL_ORDER, POSTPONE]  # menu entries, object page buttons, confirmation pages

    def has_add_permission(self, request):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


class InstallmentStatusFilter(admin.SimpleListFilter):
    title = "due"
    parameter_name = "due"

    def lookups(self, request, model_admin):
        return [("overdue", "Overdue (open, due date passed)"), ("today", "Due today"), ("week", "Due within 7 days")]

    def queryset(self, request, queryset):
        today = timezone.localdate()
        open_ = queryset.filter(status__in=["scheduled", "failed"])
        if self.value() == "overdue":
            return open_.filter(due_date__lt=today)
        if self.value() == "today":
            return open_.filter(due_date=today)
        if self.value() == "week":
            return open_.filter(due_date__gte=today, due_date__lte=today + timedelta(days=7))
        return queryset


@admin.register(Installment)
class InstallmentAdmin(CsvExportMixin, MoneyTotalsMixin, ReadOnlyAdmin):
    """Every installment of every order, to find what is due, failing or defaulted; what
    staff do about them they do on the order (retry, reschedule, cancel)."""

    list_display = [
        "due_date",
        "order_link",
        "sequence",
        money_column("amount", currency="order__currency"),
        status_column(),
        "attempts",
        "next_attempt_at",
        text_column("last_error"),
        "paid_at",
    ]
    list_filter = [InstallmentStatusFilter, "status", "order__currency", "claim_source", "due_date"]
    search_fields = ["=id", "=order__id", "order__customer__external_id", "order__customer__email", "charge_key"]
    search_help_text = "Installment id, order id, customer id or email, charge key."
    list_select_related = ["order", "order__customer"]
    date_hierarchy = "due_date"
    ordering = ["due_date", "order", "sequence"]
    money_totals_currency = "order__currency"
    inlines = [ChargeAttemptInline]
    readonly_fields = [
        "id",
        "order",
        "sequence",
        "due_date",
        money_column("amount", currency="order__currency", raw=True),
        status_column(),
        "attempts",
        "next_attempt_at",
        "claimed_at",
        "claim_source",
        "charge_key",
        "last_error",
        "paid_at",
    ]
    csv_fields = [
        "id",
        "order",
        "order__customer__external_id",
        "sequence",
        "due_date",
        "amount",
        "order__currency",
        "status",
        "attempts",
        "next_attempt_at",
        "claim_source",
        "charge_key",
        "last_error",
        "paid_at",
    ]
    csv_money = {"amount": "order__currency"}

    @admin.display(description="order", ordering="order__created_at")
    def order_link(self, obj):
        return obj_link(obj.order, f"{obj.order.customer} · {str(obj.order_id)[:8]}")
