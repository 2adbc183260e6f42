from django.contrib import admin
from django.utils import timezone

from config.admin_actions import OperatorActionsMixin
from config.admin_tools import ReadOnlyTabularInline
from installments.models import Installment, InstallmentEvent, InstallmentOrder

from .admin_actions import CANCEL_ORDER, POSTPONE, RETRY_NOW


class InstallmentInline(ReadOnlyTabularInline):
    model = Installment
    fields = [
        "sequence",
        "due_date",
        "amount",
        "status",
        "attempts",
        "next_attempt_at",
        "claim_source",
        "charge_key",
        "last_error",
        "paid_at",
    ]
    readonly_fields = fields
    ordering = ["sequence"]


class TimelineInline(ReadOnlyTabularInline):
    model = InstallmentEvent
    fields = ["created_at", "type", "from_status", "to_status", "source", "data"]
    readonly_fields = fields
    ordering = ["created_at", "id"]


class AttentionFilter(admin.SimpleListFilter):
    title = "needs attention"
    parameter_name = "attention"

    def lookups(self, request, model_admin):
        return [("overdue", "Overdue"), ("failing", "Failing (in dunning)"), ("defaulted", "Defaulted")]

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
        return queryset


@admin.register(InstallmentOrder)
class InstallmentOrderAdmin(OperatorActionsMixin, admin.ModelAdmin):
    list_display = ["id", "merchant", "customer", "amount", "currency", "status", "created_at"]
    list_filter = [AttentionFilter, "status", ("merchant", admin.RelatedOnlyFieldListFilter)]
    search_fields = ["id", "customer__external_id", "customer__email"]
    list_select_related = ["merchant", "customer"]
    raw_id_fields = ["merchant", "customer", "down_payment_charge"]
    readonly_fields = [f.name for f in InstallmentOrder._meta.fields]
    inlines = [InstallmentInline, TimelineInline]
    operator_actions = [RETRY_NOW, CANCEL_ORDER, POSTPONE]  # menu entries, object page buttons, confirmation pages

    def has_add_permission(self, request):
        return False

    def has_delete_permission(self, request, obj=None):
        return False
