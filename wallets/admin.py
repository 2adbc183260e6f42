"""Back office for the ledger. Balances, transfers and entries are read-only; every
change goes through an operator action (wallets/admin_actions.py) that calls a service:
"adjust balance" (wallet_adjust, with a mandatory reason recorded with the staff user),
"void" (hold_void), "run the ledger audit". Each needs its own permission
(wallets.adjust_balance, wallets.void_hold, wallets.run_ledger_audit): view rights alone
show the ledger and change nothing."""

from django.contrib import admin, messages
from django.contrib.admin.utils import quote
from django.urls import NoReverseMatch, reverse
from django.utils.html import format_html

from config.admin_actions import OperatorActionsMixin
from config.admin_export import CsvExportMixin
from config.admin_tools import (
    MoneyTotalsMixin,
    ReadOnlyAdmin,
    ReadOnlyTabularInline,
    flag_column,
    id_column,
    list_url,
    money_column,
    money_html,
    related_links,
    status_column,
    text_column,
    titled_filter,
    words_filter,
)

from .admin_actions import ADJUST_BALANCE, RUN_LEDGER_AUDIT, VOID_HOLD
from .models import Account, Entry, Hold, LedgerAudit, Transfer, Wallet
from .selectors import ledger_audit_format


def _warn_if_audit_failing(request) -> None:
    latest = LedgerAudit.objects.order_by("-started_at").first()
    if latest is not None and not latest.ok:
        messages.error(
            request,
            f"The latest ledger audit ({latest.started_at:%Y-%m-%d %H:%M} UTC, {latest.trigger}) FAILED: "
            "see Ledger audits.",
        )


class EntryInline(ReadOnlyTabularInline):
    model = Entry
    verbose_name = "leg"
    verbose_name_plural = "legs (entries)"
    fields = [
        "id",
        "account",
        money_column("amount", currency="account__currency"),
        money_column("balance_after", currency="account__currency", description="balance after"),
        "created_at",
    ]
    readonly_fields = fields


@admin.display(description="available")
def _available(obj):
    return money_html(obj.available, obj.currency)


@admin.register(Account)
class AccountAdmin(OperatorActionsMixin, CsvExportMixin, MoneyTotalsMixin, ReadOnlyAdmin):
    list_display = [
        id_column(),
        "kind",
        "name",
        "merchant",
        "customer",
        money_column("balance"),
        money_column("held"),
        _available,
        "created_at",
    ]
    list_filter = [
        "kind",
        "currency",
        words_filter("allow_negative", title="may go negative", yes="May go negative", no="Never negative"),
        ("merchant", admin.RelatedOnlyFieldListFilter),
    ]
    search_fields = ["=id", "merchant__name", "customer__external_id", "customer__email", "name"]
    list_select_related = ["merchant", "customer"]
    readonly_fields = [
        "id",
        "kind",
        "name",
        "merchant",
        "customer",
        "currency",
        money_column("balance", raw=True),
        money_column("held", raw=True, description="held (pending holds)"),
        _available,
        flag_column("allow_negative", yes="may go negative", no="never negative", yes_tone="amber"),
        "created_at",
        "related",
    ]
    operator_actions = [RUN_LEDGER_AUDIT]
    money_totals = ("balance", "held")
    csv_money = {"balance": "currency", "held": "currency"}

    @admin.display(description="links")
    def related(self, obj):
        return related_links(
            [
                ("Entries", list_url("wallets.entry", account__id__exact=obj.pk), obj.entries.count()),
                ("Holds", list_url("wallets.hold", account__id__exact=obj.pk), obj.holds.count()),
            ]
        )

    def changelist_view(self, request, extra_context=None):
        _warn_if_audit_failing(request)
        return super().changelist_view(request, extra_context)


@admin.register(Wallet)
class WalletAdmin(AccountAdmin):
    list_display = [
        id_column(),
        "customer",
        "merchant",
        money_column("balance"),
        money_column("held"),
        _available,
        "created_at",
    ]
    list_filter = ["currency", ("merchant", admin.RelatedOnlyFieldListFilter)]
    operator_actions = [ADJUST_BALANCE, RUN_LEDGER_AUDIT]

    def get_queryset(self, request):
        return super().get_queryset(request).filter(kind=Account.Kind.CUSTOMER_WALLET)


# Transfer references "<kind>:<id>" and the admin page of what they name.
REFERENCE_PAGES = {
    "payment": "payments_payment",
    "charge": "payments_charge",
    "refund": "payments_refund",
    "credits:grant": "credits_grant",
    "credits:revoke": "credits_grant",
}


@admin.register(Transfer)
class TransferAdmin(CsvExportMixin, MoneyTotalsMixin, ReadOnlyAdmin):
    list_display = [
        "created_at",
        "kind",
        money_column("amount"),
        "merchant",
        text_column("reference", length=30),
        id_column("reverses_id", description="reverses"),
        "created_by",
        id_column(),
    ]
    list_filter = ["kind", "currency", ("merchant", admin.RelatedOnlyFieldListFilter), "created_at"]
    search_fields = ["reference", "=id", "idempotency_key", "description"]
    search_help_text = "Reference (payment:<id>, charge:<id>, refund:<id>, ...), transfer id, idempotency key."
    list_select_related = ["merchant", "created_by"]
    date_hierarchy = "created_at"
    inlines = [EntryInline]
    csv_money = {"amount": "currency"}
    readonly_fields = [
        "id",
        "kind",
        money_column("amount", raw=True),
        "currency",
        "merchant",
        "reference_link",
        "description",
        "reverses",
        "created_by",
        "idempotency_key",
        "created_at",
        "related",
    ]

    @admin.display(description="reference")
    def reference_link(self, obj):
        """A reference names what caused the transfer ("payment:<id>"): link to its page
        (by URL name, so the ledger imports none of the apps above it)."""
        kind, _, pk = obj.reference.rpartition(":")
        url = None
        if kind in REFERENCE_PAGES and pk:
            try:
                url = reverse(f"admin:{REFERENCE_PAGES[kind]}_change", args=[quote(pk)])
            except NoReverseMatch:
                url = None
        return format_html('<a href="{}">{}</a>', url, obj.reference) if url else (obj.reference or "-")

    @admin.display(description="links")
    def related(self, obj):
        return related_links(
            [
                ("Reversals of it", list_url("wallets.transfer", reverses__id__exact=obj.pk), obj.reversals.count()),
                (
                    "Same reference",
                    list_url("wallets.transfer", reference=obj.reference) if obj.reference else None,
                    None,
                ),
            ]
        )


@admin.register(Entry)
class EntryAdmin(CsvExportMixin, MoneyTotalsMixin, ReadOnlyAdmin):
    list_display = [
        "id",
        "created_at",
        "account",
        money_column("amount", currency="account__currency"),
        money_column("balance_after", currency="account__currency", description="balance after"),
        "transfer_kind",
        text_column("transfer__reference", length=22, description="reference"),
    ]
    list_filter = [
        ("account__currency", titled_filter("currency", admin.AllValuesFieldListFilter)),
        ("account__kind", titled_filter("account kind")),
        ("transfer__kind", titled_filter("transfer kind")),
    ]
    search_fields = ["transfer__reference", "=account__id", "=transfer__id"]
    search_help_text = "Transfer reference, account id or transfer id."
    list_select_related = ["account", "transfer"]
    raw_id_fields = ["account", "transfer"]
    readonly_fields = [
        "id",
        "transfer",
        "account",
        money_column("amount", currency="account__currency", raw=True),
        money_column("balance_after", currency="account__currency", raw=True, description="balance after"),
        "created_at",
    ]
    money_totals_currency = "account__currency"
    csv_fields = [
        "id",
        "created_at",
        "transfer",
        "transfer__kind",
        "transfer__reference",
        "account",
        "account__kind",
        "amount",
        "balance_after",
        "account__currency",
    ]
    csv_money = {"amount": "account__currency", "balance_after": "account__currency"}

    @admin.display(description="type", ordering="transfer__kind")
    def transfer_kind(self, obj):
        return obj.transfer.kind


@admin.register(Hold)
class HoldAdmin(OperatorActionsMixin, CsvExportMixin, MoneyTotalsMixin, ReadOnlyAdmin):
    list_display = [
        "created_at",
        "account",
        money_column("amount", currency="account__currency"),
        money_column("captured_amount", currency="account__currency", description="captured"),
        status_column(),
        "expires_at",
        text_column("reference", length=30),
        id_column(),
    ]
    list_filter = ["status", "account__currency", "created_at"]
    search_fields = ["reference", "=id", "=account__id", "owner"]
    list_select_related = ["account"]
    raw_id_fields = ["account", "destination", "capture_transfer"]
    date_hierarchy = "created_at"
    money_totals = ("amount", "captured_amount")
    money_totals_currency = "account__currency"
    csv_money = {"amount": "account__currency", "captured_amount": "account__currency"}
    csv_fields = [
        "id",
        "created_at",
        "account",
        "account__currency",
        "destination",
        "amount",
        "captured_amount",
        "status",
        "expires_at",
        "resolved_at",
        "reference",
        "owner",
        "capture_transfer",
    ]
    readonly_fields = [
        "id",
        "account",
        "destination",
        money_column("amount", currency="account__currency", raw=True),
        money_column("captured_amount", currency="account__currency", raw=True, description="captured"),
        status_column(),
        "expires_at",
        "resolved_at",
        "reference",
        "owner",
        "capture_transfer",
        "idempotency_key",
        "created_at",
    ]
    operator_actions = [VOID_HOLD]


@admin.register(LedgerAudit)
class LedgerAuditAdmin(OperatorActionsMixin, ReadOnlyAdmin):
    list_display = [
        "started_at",
        flag_column("ok", yes="passed", no="FAILED", yes_tone="green", no_tone="red", description="result"),
        "trigger",
        "duration_ms",
        "violations",
    ]
    list_filter = [words_filter("ok", title="result", yes="Passed", no="Failed"), "trigger"]
    date_hierarchy = "started_at"
    readonly_fields = [
        "started_at",
        flag_column("ok", yes="passed", no="FAILED", yes_tone="green", no_tone="red", description="result"),
        "trigger",
        "duration_ms",
        "report_text",
    ]
    fields = readonly_fields
    change_list_template = "admin/wallets/ledgeraudit/change_list.html"
    operator_actions = [RUN_LEDGER_AUDIT]

    @admin.display(description="violations")
    def violations(self, obj):
        return sum(len(rows) for rows in obj.report.get("violations", {}).values())

    @admin.display(description="report")
    def report_text(self, obj):
        from django.utils.html import format_html

        return format_html("<pre>{}</pre>", ledger_audit_format(obj.report))

    def changelist_view(self, request, extra_context=None):
        _warn_if_audit_failing(request)
        extra_context = {**(extra_context or {}), "can_run_ledger_audit": RUN_LEDGER_AUDIT.allowed(request.user)}
        return super().changelist_view(request, extra_context)
