"""Back office for credits. Accounts, grants, debits and revocations are read-only;
staff change balances only through operator actions (credits/admin_actions.py) that call
services, with a mandatory reason on a confirmation page: "grant credits" (credits_grant)
and "revoke credits" (credits_revoke), on accounts (one customer) and on grants (that
grant's customer, its remaining units first). Packs are edited here."""

from django.contrib import admin

from config.admin_actions import OperatorActionsMixin
from config.admin_tools import ReadOnlyAdmin, flag_column, money_column, words_filter

from .admin_actions import GRANT, REVOKE
from .models import CreditAccount, CreditPack, Debit, Grant, Revocation, StripeInvoicePayment


@admin.register(CreditAccount)
class CreditAccountAdmin(OperatorActionsMixin, ReadOnlyAdmin):
    list_display = ["customer", "merchant", money_column("balance"), "created_at", "id"]
    list_filter = [("merchant", admin.RelatedOnlyFieldListFilter)]
    search_fields = ["=id", "customer__external_id", "customer__email", "merchant__name"]
    list_select_related = ["merchant", "customer"]
    readonly_fields = ["id", "merchant", "customer", "balance", "created_at"]
    fields = readonly_fields
    operator_actions = [GRANT, REVOKE]

    def get_queryset(self, request):
        return super().get_queryset(request).filter(customer__isnull=False)


@admin.register(CreditPack)
class CreditPackAdmin(admin.ModelAdmin):
    list_display = [
        "code",
        "name",
        "merchant",
        "credits",
        money_column("price_amount", description="price"),
        "stripe_price_id",
        "expires_in_days",
        flag_column("active", yes="active", no="inactive", yes_tone="green"),
    ]
    list_filter = [words_filter("active", title="active", yes="Active", no="Inactive"), "currency", "merchant"]
    search_fields = ["code", "name", "stripe_price_id"]
    list_select_related = ["merchant"]
    autocomplete_fields = ["merchant"]


@admin.register(Grant)
class GrantAdmin(OperatorActionsMixin, ReadOnlyAdmin):
    list_display = [
        "created_at",
        "customer",
        "units",
        "remaining",
        "source",
        "pack",
        "expires_at",
        "stripe_event_id",
    ]
    list_filter = ["source", "merchant", "created_at"]
    search_fields = [
        "=id",
        "customer__external_id",
        "customer__email",
        "stripe_event_id",
        "stripe_object_id",
        "stripe_payment_intent",
        "reason",
    ]
    list_select_related = ["customer", "pack"]
    raw_id_fields = ["customer", "account", "transfer", "expiry_transfer", "pack"]
    date_hierarchy = "created_at"
    operator_actions = [REVOKE]


@admin.register(Debit)
class DebitAdmin(ReadOnlyAdmin):
    list_display = ["created_at", "customer", "units", "reason", "ref"]
    list_filter = ["merchant", "created_at"]
    search_fields = ["=id", "customer__external_id", "customer__email", "ref", "reason"]
    list_select_related = ["customer"]
    raw_id_fields = ["customer", "account", "transfer"]
    date_hierarchy = "created_at"


@admin.register(Revocation)
class RevocationAdmin(ReadOnlyAdmin):
    list_display = ["created_at", "customer", "requested", "revoked", "shortfall", "reason", "stripe_event_id"]
    list_filter = ["merchant", "created_at"]
    date_hierarchy = "created_at"
    search_fields = ["=id", "customer__external_id", "stripe_event_id", "reason"]
    list_select_related = ["customer"]
    raw_id_fields = ["customer", "account", "grant", "transfer"]


@admin.register(StripeInvoicePayment)
class StripeInvoicePaymentAdmin(ReadOnlyAdmin):
    list_display = ["created_at", "invoice", "payment_intent", "charge", "stripe_event_id"]
    search_fields = ["=invoice", "=payment_intent", "=charge", "=stripe_event_id"]
    date_hierarchy = "created_at"
