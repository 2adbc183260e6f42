"""Back office for the ledger. Balances, transfers and entries are read-only; every
change goes through an operator action (wallets/admin_actions.py) that calls a service:
"adjust balance" (wallet_adjust, with a mandatory reason recorded with the staff user),
"void" (hold_void), "run the ledger audit". Each needs its own permission
(wallets.adjust_balance, wallets.void_hold, wallets.run_ledger_audit): view rights alone
show the ledger and change nothing."""

from django.contrib import admin, messages

from config.admin_actions import OperatorActionsMixin
from config.currencies import format_amount

from .admin_actions import ADJUST_BALANCE, RUN_LEDGER_AUDIT, VOID_HOLD
from .models import Account, Entry, Hold, LedgerAudit, Transfer, Wallet
from .selectors import ledger_audit_format


class ReadOnlyAdmin(admin.ModelAdmin):
    def has_add_permission(self, request, obj=None):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


def _warn_if_audit_failing(request) -> None:
    latest = LedgerAudit.objects.order_by("-started_at").first()
    if latest is not None and not latest.ok:
        messages.error(
            request,
            f"The latest ledger audit ({latest.started_at:%Y-%m-%d %H:%M} UTC, {latest.trigger}) FAILED: "
            "see Ledger audits.",
        )


def _money(amount: int, currency: str) -> str:
    if currency == "credits":
        return f"{amount} credits"
    return format_amount(amount, currency)


class EntryInline(admin.TabularInline):
    model = Entry
    extra = 0
    can_delete = False
    fields = ["id", "account", "amount", "balance_after", "created_at"]
    readonly_fields = fields

    def has_add_permission(self, request, obj=None):
        return False

    def has_change_permission(self, request, obj=None):
        return False


@admin.register(Account)
class AccountAdmin(OperatorActionsMixin, ReadOnlyAdmin):
    list_display = ["id", "kind", "name", "currency", "merchant", "customer", "balance_display", "held", "created_at"]
    list_filter = ["kind", "currency", "allow_negative"]
    search_fields = ["id", "merchant__name", "customer__external_id", "customer__email", "name"]
    list_select_related = ["merchant", "customer"]
    readonly_fields = ["balance", "held", "allow_negative"]
    operator_actions = [RUN_LEDGER_AUDIT]

    @admin.display(description="balance")
    def balance_display(self, obj):
        return _money(obj.balance, obj.currency)

    def changelist_view(self, request, extra_context=None):
        _warn_if_audit_failing(request)
        return super().changelist_view(request, extra_context)


@admin.register(Wallet)
class WalletAdmin(AccountAdmin):
    list_display = ["id", "customer", "merchant", "currency", "balance_display", "held", "available", "created_at"]
    list_filter = ["currency"]
    operator_actions = [ADJUST_BALANCE, RUN_LEDGER_AUDIT]

    def get_queryset(self, request):
        return super().get_queryset(request).filter(kind=Account.Kind.CUSTOMER_WALLET)


@admin.register(Transfer)
class TransferAdmin(ReadOnlyAdmin):
    list_display = ["created_at", "kind", "amount_display", "merchant", "reference", "reverses", "created_by", "id"]
    list_filter = ["kind", "currency"]
    search_fields = ["reference", "=id", "idempotency_key", "description"]
    list_select_related = ["merchant", "created_by"]
    date_hierarchy = "created_at"
    inlines = [EntryInline]

    @admin.display(description="amount")
    def amount_display(self, obj):
        return _money(obj.amount, obj.currency)


@admin.register(Entry)
class EntryAdmin(ReadOnlyAdmin):
    list_display = ["id", "created_at", "account", "amount", "balance_after", "transfer_kind", "transfer_reference"]
    search_fields = ["transfer__reference", "=account__id", "=transfer__id"]
    list_select_related = ["account", "transfer"]
    raw_id_fields = ["account", "transfer"]

    @admin.display(description="type")
    def transfer_kind(self, obj):
        return obj.transfer.kind

    @admin.display(description="reference")
    def transfer_reference(self, obj):
        return obj.transfer.reference


@admin.register(Hold)
class HoldAdmin(OperatorActionsMixin, ReadOnlyAdmin):
    list_display = ["created_at", "account", "amount", "captured_amount", "status", "expires_at", "reference"]
    list_filter = ["status"]
    search_fields = ["reference", "=id", "=account__id"]
    list_select_related = ["account"]
    raw_id_fields = ["account", "destination", "capture_transfer"]
    operator_actions = [VOID_HOLD]


@admin.register(LedgerAudit)
class LedgerAuditAdmin(OperatorActionsMixin, ReadOnlyAdmin):
    list_display = ["started_at", "ok", "trigger", "duration_ms", "violations"]
    list_filter = ["ok", "trigger"]
    readonly_fields = ["started_at", "ok", "trigger", "duration_ms", "report_text"]
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
