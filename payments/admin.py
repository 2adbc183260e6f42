from django.contrib import admin, messages

from config.admin_tools import ReadOnlyAdmin, ReadOnlyTabularInline
from config.errors import DomainError
from payments.identity.admin import *  # noqa: F401,F403  (registers identity's admin classes)
from payments.models import Charge, MockCheckout, Payment, PaymentEvent, Refund
from payments.services import payment_cancel, payment_refund, payments_reconcile

STAFF = PaymentEvent.Source.STAFF


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
class PaymentAdmin(admin.ModelAdmin):
    list_display = ["order_id", "merchant", "amount", "currency", "status", "provider", "created_at"]
    list_filter = ["status", "provider", FlaggedFilter, ("merchant", admin.RelatedOnlyFieldListFilter), "created_at"]
    search_fields = ["order_id", "provider_payment_id", "id"]
    list_select_related = ["merchant"]
    date_hierarchy = "created_at"
    raw_id_fields = ["merchant", "customer"]
    inlines = [TimelineInline, RefundInline]
    actions = ["refund_in_full", "cancel", "reconcile_now"]
    readonly_fields = [f.name for f in Payment._meta.fields]

    def has_add_permission(self, request):
        return False

    def has_delete_permission(self, request, obj=None):
        return False

    def _each(self, request, queryset, action):
        for payment in queryset:
            try:
                action(payment)
                messages.success(request, f"{payment.order_id}: done.")
            except DomainError as exc:
                messages.error(request, f"{payment.order_id}: {exc.message}")

    @admin.action(description="Refund what is left", permissions=["change"])
    def refund_in_full(self, request, queryset):
        self._each(
            request, queryset, lambda p: payment_refund(payment=p, reason=f"staff: {request.user}", source=STAFF)
        )

    @admin.action(description="Cancel (pending only)", permissions=["change"])
    def cancel(self, request, queryset):
        self._each(request, queryset, lambda p: payment_cancel(payment=p, source=STAFF))

    @admin.action(description="Reconcile the selected pending payments now", permissions=["change"])
    def reconcile_now(self, request, queryset):
        counts = payments_reconcile(payment_ids=[p.pk for p in queryset])
        messages.info(request, f"Reconciliation: {counts or 'nothing pending among the selected'}")


@admin.register(Refund)
class RefundAdmin(ReadOnlyAdmin):
    list_display = ["id", "payment", "amount", "status", "reason", "created_at"]
    list_filter = ["status", "payment__currency", ("payment__merchant", admin.RelatedOnlyFieldListFilter)]
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
