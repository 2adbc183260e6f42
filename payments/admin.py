from django.contrib import admin
from django.utils.html import format_html, format_html_join

from config.admin_actions import OperatorActionsMixin
from config.admin_export import CsvExportMixin
from config.admin_tools import (
    ActionsOnlyAdmin,
    MoneyTotalsMixin,
    ReadOnlyAdmin,
    ReadOnlyTabularInline,
    flag_column,
    id_column,
    list_url,
    money_column,
    obj_link,
    related_links,
    status_column,
    text_column,
)
from payments.identity.admin import *  # noqa: F401, F403  (registers identity's admin classes
from payments.models import Charge, MockCheckout, Payment, PaymentEvent, Refund
from webhooks.models import OutboundEvent

from .admin_actions import CANCEL, RECONCILE, REFUND


class TimelineInline(ReadOnlyTabularInline):
    model = PaymentEvent
    verbose_name = "timeline event"
    verbose_name_plural = "timeline"
    fields = ["created_at", "type", "from_status", "to_status", "source", flag_column("flagged", yes="flagged"), "data"]
    readonly_fields = fields
    ordering = ["created_at", "id"]


class ChargeInline(ReadOnlyTabularInline):
    model = Charge
    verbose_name = "charge (funding attempt)"
    verbose_name_plural = "charges (funding attempts)"
    fields = [
        "created_at",
        money_column("amount"),
        money_column("wallet_amount", description="from wallet"),
        money_column("external_amount", description="from card"),
        status_column(),
        "failure_reason",
    ]
    readonly_fields = fields
    show_change_link = True


class RefundInline(ReadOnlyTabularInline):
    model = Refund
    fields = [
        "created_at",
        money_column("amount", currency="payment__currency"),
        status_column(),
        "reason",
        "provider_refund_id",
    ]
    readonly_fields = fields
    show_change_link = True


class FlaggedFilter(admin.SimpleListFilter):
    title = "needs attention"
    parameter_name = "flagged"

    def lookups(self, request, model_admin):
        return [("yes", "Flagged events")]

    def queryset(self, request, queryset):
        return queryset.filter(timeline__flagged=True).distinct() if self.value() == "yes" else queryset


def transfers_link(*references: str, label: str = "Ledger transfers"):
    return (label, list_url("wallets.transfer", reference__in=",".join(references)), None)


def outbound_events_of(obj, *, limit: int = 10):
    """The webhook events sent to the merchant about `obj` (a payment or a charge),
    newest first, each with its delivery status."""
    events = (
        OutboundEvent.objects.filter(merchant_id=obj.merchant_id, data__id=str(obj.pk))
        .prefetch_related("deliveries")
        .order_by("-created_at")[:limit]
    )
    rows = [
        (
            obj_link(event, event.type),
            f"{event.created_at:%Y-%m-%d %H:%M:%S}",
            ", ".join(d.status for d in event.deliveries.all()) or "no endpoint",
        )
        for event in events
    ]
    if not rows:
        return "—"
    more = list_url("webhooks.outboundevent", subject=str(obj.pk))
    return format_html(
        '<ul class="pd-events">{}<li><a href="{}">All events about it</a></li></ul>',
        format_html_join("", "<li>{} <small>{} · deliveries: {}</small></li>", rows),
        more,
    )


@admin.register(Payment)
class PaymentAdmin(OperatorActionsMixin, CsvExportMixin, MoneyTotalsMixin, ActionsOnlyAdmin):
    list_display = [
        text_column("order_id", length=22, description="order"),
        "merchant",
        "customer",
        money_column("amount"),
        status_column(),
        "provider",
        "created_at",
        id_column(),
    ]
    list_filter = [
        "status",
        "provider",
        "currency",
        FlaggedFilter,
        ("merchant", admin.RelatedOnlyFieldListFilter),
        "created_at",
    ]
    search_fields = ["order_id", "provider_payment_id", "=id", "customer__external_id", "customer__email"]
    search_help_text = "Order id, provider payment id, payment id, customer id or email."
    list_select_related = ["merchant", "customer"]
    date_hierarchy = "created_at"
    raw_id_fields = ["merchant", "customer"]
    inlines = [TimelineInline, ChargeInline, RefundInline]
    operator_actions = [REFUND, CANCEL, RECONCILE]  # menu entries, object page buttons, confirmation pages
    money_totals = ("amount", ("amount_refunded", "refunded"))
    csv_fields = [
        "id",
        "created_at",
        "updated_at",
        "merchant",
        "merchant__name",
        "customer",
        "customer__external_id",
        "order_id",
        "amount",
        "amount_refunded",
        "currency",
        "status",
        "failure_reason",
        "provider",
        "provider_payment_id",
        "description",
        "metadata",
    ]
    csv_money = {"amount": "currency", "amount_refunded": "currency"}
    fieldsets = [
        (
            None,
            {
                "fields": [
                    "id",
                    "order_id",
                    "merchant",
                    "customer",
                    money_column("amount", raw=True),
                    money_column("amount_refunded", raw=True, description="refunded"),
                    status_column(),
                    "failure_reason",
                    "description",
                    "created_at",
                    "updated_at",
                ]
            },
        ),
        ("Related", {"fields": ["related", "webhook_events"]}),
        ("Provider", {"fields": ["provider", "provider_payment_id", "payment_url", "return_url"]}),
        (
            "Details",
            {
                "classes": ["collapse"],
                "fields": [
                    "metadata",
                    "split_instructions",
                    "idempotency_key",
                    "reconcile_claimed_at",
                    "client_secret",
                ],
            },
        ),
    ]

    def get_readonly_fields(self, request, obj=None):
        return [field for _, options in self.fieldsets for field in options["fields"]]

    def has_add_permission(self, request):
        return False

    def has_delete_permission(self, request, obj=None):
        return False

    @admin.display(description="links")
    def related(self, obj):
        charges = list(obj.charges.values_list("pk", flat=True))
        refunds = list(obj.refunds.values_list("pk", flat=True))
        return related_links(
            [
                ("Charges", list_url("payments.charge", payment__id__exact=obj.pk), len(charges)),
                ("Refunds", list_url("payments.refund", payment__id__exact=obj.pk), len(refunds)),
                transfers_link(
                    f"payment:{obj.pk}", *(f"charge:{pk}" for pk in charges), *(f"refund:{pk}" for pk in refunds)
                ),
                ("Webhook events", list_url("webhooks.outboundevent", subject=str(obj.pk)), None),
                ("Timeline (tracking)", f"/api/v1/payments/{obj.pk}/tracking", None),
            ]
        )

    @admin.display(description="webhook events")
    def webhook_events(self, obj):
        return outbound_events_of(obj)


@admin.register(Refund)
class RefundAdmin(CsvExportMixin, MoneyTotalsMixin, ReadOnlyAdmin):
    list_display = [
        id_column(),
        "payment",
        money_column("amount", currency="payment__currency"),
        money_column("wallet_amount", currency="payment__currency", description="to wallet"),
        status_column(),
        text_column("reason"),
        "created_at",
    ]
    list_filter = [
        "status",
        "payment__currency",
        ("payment__merchant", admin.RelatedOnlyFieldListFilter),
        "created_at",
    ]
    search_fields = ["=id", "payment__order_id", "=payment__id", "provider_refund_id", "reason"]
    list_select_related = ["payment"]
    date_hierarchy = "created_at"
    money_totals_currency = "payment__currency"
    csv_fields = [
        "id",
        "created_at",
        "payment",
        "payment__order_id",
        "amount",
        "wallet_amount",
        "provider_amount",
        "payment__currency",
        "status",
        "reason",
        "failure_reason",
        "provider_refund_id",
    ]
    csv_money = {
        "amount": "payment__currency",
        "wallet_amount": "payment__currency",
        "provider_amount": "payment__currency",
    }
    readonly_fields = [
        "id",
        "payment",
        money_column("amount", currency="payment__currency", raw=True),
        money_column("wallet_amount", currency="payment__currency", raw=True, description="back to the wallet"),
        money_column("provider_amount", currency="payment__currency", raw=True, description="through the provider"),
        status_column(),
        "reason",
        "failure_reason",
        "provider_refund_id",
        "split_returns",
        "idempotency_key",
        "claimed_at",
        "created_at",
        "related",
    ]

    @admin.display(description="links")
    def related(self, obj):
        return related_links(
            [
                ("Charges of the payment", list_url("payments.charge", payment__id__exact=obj.payment_id), None),
                transfers_link(f"refund:{obj.pk}"),
                (
                    "Webhook events of the payment",
                    list_url("webhooks.outboundevent", subject=str(obj.payment_id)),
                    None,
                ),
            ]
        )


@admin.register(MockCheckout)
class MockCheckoutAdmin(ActionsOnlyAdmin):
    list_display = ["provider_payment_id", "payment", status_column(), "updated_at"]
    list_filter = ["status"]
    search_fields = ["provider_payment_id", "payment__order_id", "=payment__id"]
    list_select_related = ["payment"]
    readonly_fields = ["provider_payment_id", "payment", status_column(), "updated_at"]


@admin.register(Charge)
class ChargeAdmin(CsvExportMixin, MoneyTotalsMixin, ReadOnlyAdmin):
    list_display = [
        id_column(),
        "merchant",
        "customer",
        money_column("amount"),
        money_column("wallet_amount", description="from wallet"),
        money_column("external_amount", description="from card"),
        status_column(),
        "provider",
        "created_at",
    ]
    list_filter = ["status", "provider", "currency", ("merchant", admin.RelatedOnlyFieldListFilter), "created_at"]
    search_fields = ["=id", "=payment__id", "payment__order_id", "provider_charge_id", "customer__external_id"]
    list_select_related = ["merchant", "customer"]
    date_hierarchy = "created_at"
    money_totals = ("amount", ("wallet_amount", "from wallet"), ("external_amount", "from card"))
    csv_fields = [
        "id",
        "created_at",
        "merchant",
        "merchant__name",
        "customer",
        "customer__external_id",
        "payment",
        "amount",
        "wallet_amount",
        "external_amount",
        "currency",
        "status",
        "failure_reason",
        "provider",
        "provider_charge_id",
        "description",
        "metadata",
    ]
    csv_money = {"amount": "currency", "wallet_amount": "currency", "external_amount": "currency"}
    readonly_fields = [
        "id",
        "merchant",
        "customer",
        "payment",
        money_column("amount", raw=True),
        money_column("wallet_amount", raw=True, description="from the wallet"),
        money_column("external_amount", raw=True, description="from the card"),
        status_column(),
        "failure_reason",
        "provider",
        "provider_charge_id",
        "hold",
        "wallet_transfer",
        "split_instructions",
        "description",
        "metadata",
        "idempotency_key",
        "claimed_at",
        "created_at",
        "updated_at",
        "related",
        "webhook_events",
    ]

    @admin.display(description="links")
    def related(self, obj):
        return related_links(
            [
                ("Refunds of the payment", list_url("payments.refund", payment__id__exact=obj.payment_id), None),
                transfers_link(f"charge:{obj.pk}"),
                ("Webhook events", list_url("webhooks.outboundevent", subject=str(obj.pk)), None),
            ]
        )

    @admin.display(description="webhook events")
    def webhook_events(self, obj):
        return outbound_events_of(obj)
