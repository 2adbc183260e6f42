from django.contrib import admin

from config.admin_actions import OperatorActionsMixin
from config.admin_tools import ReadOnlyAdmin, ReadOnlyTabularInline
from payments.identity.admin import *  # noqa: F401,F403  (registers identity's admin classes)
from payments.models import Charge, MockCheckout, Payment, PaymentEvent, Refund

from .admin_actions import CANCEL, RECONCILE, REFUND


class TimelineInline(ReadOnlyTabularInline):
    model = PaymentEvent
    fields = ["created_at", "type", "from_status", "to_status", "source", "flagged", "data"]
    readonly_fields = fields
    ordering = ["created_at", "id"]


class RefundInline(ReadOnlyTabularInline):
    model = Refund
    fields = ["id", "amount", "status", "reason", "provider_refund_id", "created_at"]
    readonly_fields = fields
    show_change_link = True


class FlaggedFilter(admin.SimpleListFilter):
    title = "needs attention"
    parameter_name = "flagged"

    def lookups(self, request, model_admin):
        return [("yes", "Flagged events")]

    def queryset(self, request, queryset):
        return queryset.filter(timeline__flagged=True).distinct() if self.value() == "yes" else queryset


@admin.register(Payment)
class PaymentAdmin(OperatorActionsMixin, admin.ModelAdmin):
    list_display = ["order_id", "merchant", "amount", "currency", "status", "provider", "created_at"]
    list_filter = ["status", "provider", FlaggedFilter, ("merchant", admin.RelatedOnlyFieldListFilter), "created_at"]
    search_fields = ["order_id", "provider_payment_id", "id"]
    list_select_related = ["merchant"]
    date_hierarchy = "created_at"
    raw_id_fields = ["merchant", "customer"]
    inlines = [TimelineInline, RefundInline]
    operator_actions = [REFUND, CANCEL, RECONCILE]  # menu entries, object page buttons, confirmation pages
    readonly_fields = [f.name for f in Payment._meta.fields]

    def has_add_permission(self, request):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


@admin.register(Refund)
class RefundAdmin(ReadOnlyAdmin):
    list_display = ["id", "payment", "amount", "status", "reason", "created_at"]
    list_filter = ["status"]
    search_fields = ["id", "payment__order_id", "provider_refund_id"]
    list_select_related = ["payment"]
    readonly_fields = [f.name for f in Refund._meta.fields]


@admin.register(MockCheckout)
class MockCheckoutAdmin(admin.ModelAdmin):
    list_display = ["provider_payment_id", "payment", "status", "updated_at"]
    readonly_fields = ["provider_payment_id", "payment", "status", "updated_at"]

    def has_add_permission(self, request):
        return False


@admin.register(Charge)
class ChargeAdmin(ReadOnlyAdmin):
    list_display = [
        "id",
        "merchant",
        "customer",
        "amount",
        "currency",
        "wallet_amount",
        "external_amount",
        "status",
        "created_at",
    ]
    list_filter = ["status", "provider", ("merchant", admin.RelatedOnlyFieldListFilter)]
    search_fields = ["id", "payment__id", "provider_charge_id", "customer__external_id"]
    list_select_related = ["merchant", "customer"]
    readonly_fields = [f.name for f in Charge._meta.fields]
