from datetime import timedelta

from django import forms
from django.contrib import admin, messages
from django.shortcuts import render
from django.utils import timezone

from config.admin_tools import ReadOnlyTabularInline
from config.errors import DomainError
from installments.models import Installment, InstallmentEvent, InstallmentOrder
from installments.services import installment_order_cancel, installment_reschedule, installment_retry_now


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


class PostponeForm(forms.Form):
    days = forms.IntegerField(min_value=1, max_value=365, help_text="Move every open installment this many days.")


@admin.register(InstallmentOrder)
class InstallmentOrderAdmin(admin.ModelAdmin):
    list_display = ["id", "merchant", "customer", "amount", "currency", "status", "created_at"]
    list_filter = [AttentionFilter, "status", ("merchant", admin.RelatedOnlyFieldListFilter)]
    search_fields = ["id", "customer__external_id", "customer__email"]
    list_select_related = ["merchant", "customer"]
    raw_id_fields = ["merchant", "customer", "down_payment_charge"]
    readonly_fields = [f.name for f in InstallmentOrder._meta.fields]
    inlines = [InstallmentInline, TimelineInline]
    actions = ["retry_failed_now", "cancel_orders", "postpone"]

    def has_add_permission(self, request):
        return False

    def has_delete_permission(self, request, obj=None):
        return False

    @admin.action(description="Retry failed installments now")
    def retry_failed_now(self, request, queryset):
        count = 0
        for installment in Installment.objects.filter(order__in=queryset, status="failed"):
            installment_retry_now(installment=installment)
            count += 1
        messages.success(request, f"{count} installments are due now; the next collection run takes them.")

    @admin.action(description="Cancel (open installments canceled, paid ones untouched)")
    def cancel_orders(self, request, queryset):
        for order in queryset:
            try:
                installment_order_cancel(order=order, source="staff")
            except DomainError as exc:
                messages.error(request, f"{order.pk}: {exc.message}")

    @admin.action(description="Reschedule: postpone open installments…")
    def postpone(self, request, queryset):
        form = PostponeForm(request.POST if "apply" in request.POST else None)
        if form.is_valid():
            moved = 0
            for installment in Installment.objects.filter(order__in=queryset, status__in=["scheduled", "failed"]):
                installment_reschedule(
                    installment=installment, due_date=installment.due_date + timedelta(days=form.cleaned_data["days"])
                )
                moved += 1
            messages.success(request, f"{moved} installments rescheduled.")
            return None
        return render(
            request,
            "admin/installments/postpone.html",
            {
                **self.admin_site.each_context(request),
                "form": form,
                "orders": queryset,
                "action_checkbox_name": admin.helpers.ACTION_CHECKBOX_NAME,
                "title": "Postpone installments",
            },
        )
