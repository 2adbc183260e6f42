"""Back office for the ledger. Balances, transfers and entries are read-only; every
change goes through a service: "adjust balance" (wallet_adjust, with a mandatory reason
recorded with the staff user), "void hold" (hold_void), "run ledger audit". Each of these
actions needs its own permission (wallets.adjust_balance, wallets.void_hold,
wallets.run_ledger_audit): view rights alone show the ledger and change nothing."""

import uuid

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.http import HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import path, reverse

from config.currencies import MAX_AMOUNT, format_amount
from config.errors import DomainError

from .models import Account, Entry, Hold, LedgerAudit, Transfer, Wallet
from .selectors import ledger_audit_format
from .services import hold_void, ledger_audit_run, wallet_adjust


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


# Each action that changes something needs its own permission (Meta.permissions on the
# models), never just "view": a staff user who may look at the ledger may not move money.
PERM_ADJUST_BALANCE = "wallets.adjust_balance"
PERM_VOID_HOLD = "wallets.void_hold"
PERM_RUN_LEDGER_AUDIT = "wallets.run_ledger_audit"


@admin.action(description="Run the ledger audit (whole ledger)", permissions=["run_ledger_audit"])
def run_ledger_audit(modeladmin, request, queryset=None):
    audit = ledger_audit_run(trigger="admin")
    level = messages.SUCCESS if audit.ok else messages.ERROR
    messages.add_message(request, level, ledger_audit_format(audit.report))


class RunLedgerAuditMixin:
    def has_run_ledger_audit_permission(self, request, obj=None):
        return request.user.has_perm(PERM_RUN_LEDGER_AUDIT)


@admin.register(Account)
class AccountAdmin(RunLedgerAuditMixin, ReadOnlyAdmin):
    list_display = ["id", "kind", "name", "currency", "merchant", "customer", "balance_display", "held", "created_at"]
    list_filter = ["kind", "currency", "allow_negative"]
    search_fields = ["id", "merchant__name", "customer__external_id", "customer__email", "name"]
    list_select_related = ["merchant", "customer"]
    readonly_fields = ["balance", "held", "allow_negative"]
    actions = [run_ledger_audit]

    @admin.display(description="balance")
    def balance_display(self, obj):
        return _money(obj.balance, obj.currency)

    def changelist_view(self, request, extra_context=None):
        _warn_if_audit_failing(request)
        return super().changelist_view(request, extra_context)


class AdjustBalanceForm(forms.Form):
    amount = forms.IntegerField(
        min_value=-MAX_AMOUNT,
        max_value=MAX_AMOUNT,
        help_text="Signed, in minor units: 500 credits 5.00, -500 debits 5.00. Never a decimal.",
    )
    reason = forms.CharField(widget=forms.Textarea(attrs={"rows": 3}), help_text="Required; kept on the transfer.")
    # Made when the form is first shown and sent back with it: the adjustment's idempotency
    # key, so a double submit (or a browser resend) adjusts once.
    token = forms.UUIDField(widget=forms.HiddenInput)

    def clean_amount(self):
        amount = self.cleaned_data["amount"]
        if amount == 0:
            raise forms.ValidationError("The amount must not be zero.")
        return amount


@admin.register(Wallet)
class WalletAdmin(AccountAdmin):
    list_display = ["id", "customer", "merchant", "currency", "balance_display", "held", "available", "created_at"]
    list_filter = ["currency"]
    actions = ["adjust_balance", run_ledger_audit]

    def get_queryset(self, request):
        return super().get_queryset(request).filter(kind=Account.Kind.CUSTOMER_WALLET)

    def has_adjust_balance_permission(self, request, obj=None):
        return request.user.has_perm(PERM_ADJUST_BALANCE)

    @admin.action(description="Adjust balance (credit or debit, with a reason)", permissions=["adjust_balance"])
    def adjust_balance(self, request, queryset):
        if queryset.count() != 1:
            self.message_user(request, "Select exactly one wallet to adjust.", messages.WARNING)
            return None
        wallet = queryset.get()
        if "apply" in request.POST:
            form = AdjustBalanceForm(request.POST)
            if form.is_valid():
                key = f"admin-adjust:{form.cleaned_data['token']}"
                replay = Transfer.objects.filter(merchant_id=wallet.merchant_id, idempotency_key=key).exists()
                try:
                    transfer = wallet_adjust(
                        wallet=wallet,
                        amount=form.cleaned_data["amount"],
                        reason=form.cleaned_data["reason"],
                        staff_user=request.user,
                        idempotency_key=key,
                    )
                except DomainError as exc:
                    self.message_user(request, f"Not adjusted: {exc.message}", messages.ERROR)
                    return None
                wallet.refresh_from_db(fields=["balance", "held"])
                balance = _money(wallet.balance, wallet.currency)
                if replay:
                    self.message_user(
                        request,
                        f"This adjustment was already made (transfer {transfer.pk}); nothing changed. "
                        f"Balance {balance}.",
                        messages.WARNING,
                    )
                else:
                    self.message_user(
                        request, f"Adjusted {wallet}: transfer {transfer.pk}; balance now {balance}.", messages.SUCCESS
                    )
                return HttpResponseRedirect(request.get_full_path())
        else:
            form = AdjustBalanceForm(initial={"token": uuid.uuid4()})
        context = {
            **self.admin_site.each_context(request),
            "title": "Adjust wallet balance",
            "opts": self.model._meta,
            "wallet": wallet,
            "balance": _money(wallet.balance, wallet.currency),
            "form": form,
            "action_checkbox_name": admin.helpers.ACTION_CHECKBOX_NAME,
        }
        return TemplateResponse(request, "admin/wallets/adjust_balance.html", context)


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
class HoldAdmin(ReadOnlyAdmin):
    list_display = ["created_at", "account", "amount", "captured_amount", "status", "expires_at", "reference"]
    list_filter = ["status"]
    search_fields = ["reference", "=id", "=account__id"]
    list_select_related = ["account"]
    raw_id_fields = ["account", "destination", "capture_transfer"]
    actions = ["void_holds"]

    def has_void_hold_permission(self, request, obj=None):
        return request.user.has_perm(PERM_VOID_HOLD)

    @admin.action(description="Void selected holds", permissions=["void_hold"])
    def void_holds(self, request, queryset):
        for hold in queryset:
            try:
                hold_void(hold=hold)
                self.message_user(request, f"Voided {hold}.", messages.SUCCESS)
            except DomainError as exc:
                self.message_user(request, f"{hold}: {exc.message}", messages.ERROR)


@admin.register(LedgerAudit)
class LedgerAuditAdmin(RunLedgerAuditMixin, ReadOnlyAdmin):
    list_display = ["started_at", "ok", "trigger", "duration_ms", "violations"]
    list_filter = ["ok", "trigger"]
    readonly_fields = ["started_at", "ok", "trigger", "duration_ms", "report_text"]
    fields = readonly_fields
    change_list_template = "admin/wallets/ledgeraudit/change_list.html"
    actions = [run_ledger_audit]

    @admin.display(description="violations")
    def violations(self, obj):
        return sum(len(rows) for rows in obj.report.get("violations", {}).values())

    @admin.display(description="report")
    def report_text(self, obj):
        from django.utils.html import format_html

        return format_html("<pre>{}</pre>", ledger_audit_format(obj.report))

    def get_urls(self):
        return [
            path("run/", self.admin_site.admin_view(self.run_view), name="wallets_ledgeraudit_run"),
            *super().get_urls(),
        ]

    def run_view(self, request):
        if not self.has_run_ledger_audit_permission(request):
            raise PermissionDenied
        if request.method == "POST":
            run_ledger_audit(self, request)
        return HttpResponseRedirect(reverse("admin:wallets_ledgeraudit_changelist"))

    def changelist_view(self, request, extra_context=None):
        _warn_if_audit_failing(request)
        extra_context = {**(extra_context or {}), "can_run_ledger_audit": self.has_run_ledger_audit_permission(request)}
        return super().changelist_view(request, extra_context)
