"""Operator actions on the ledger (config/admin_actions.py): adjust a wallet's balance,
void a hold, run the ledger audit. Each needs its own permission (wallets.adjust_balance,
wallets.void_hold, wallets.run_ledger_audit): view rights alone change nothing."""

from django import forms
from django.contrib import messages
from django.urls import reverse

from config.admin_actions import (
    OperatorAction,
    OperatorActionForm,
    Outcome,
    amount_widget,
    minor_units_label,
    money,
)
from config.currencies import MAX_AMOUNT

from .models import Hold, Transfer
from .services import hold_void, ledger_audit_run, wallet_adjust


def _balances(wallet) -> str:
    held = f", {money(wallet.held, wallet.currency)} held" if wallet.held else ""
    return f"balance {money(wallet.balance, wallet.currency)}{held}"


class AdjustBalanceForm(OperatorActionForm):
    amount = forms.IntegerField(min_value=-MAX_AMOUNT, max_value=MAX_AMOUNT)

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        (wallet,) = self.objects or [None]
        if wallet is None:
            return
        amount = self.fields["amount"]
        amount.label = minor_units_label("Amount", wallet.currency, signed=True)
        amount.help_text = (
            f"Positive credits the wallet, negative debits it: 500 adds {money(500, wallet.currency)}, "
            f"-500 takes it back. Never a decimal. Available now: {money(wallet.available, wallet.currency)}."
        )
        amount.widget = amount_widget(wallet.currency)

    def clean_amount(self):
        amount = self.cleaned_data["amount"]
        if amount == 0:
            raise forms.ValidationError("The amount must not be zero.")
        return amount


class AdjustBalance(OperatorAction):
    name = "adjust_balance"
    label = "Adjust balance…"
    title = "Adjust wallet balance"
    permission = "wallets.adjust_balance"
    confirm_label = "Yes, adjust the balance"
    form_class = AdjustBalanceForm
    single = True
    atomic = True
    explanation = (
        "The adjustment is a ledger transfer with the merchant's external funding account: a credit comes "
        "from it, a debit goes back to it, so +X then -X leaves every account as it was. It is recorded on "
        "the transfer with your user and the reason, and announced to the merchant like any credit or "
        "debit. Entries are never edited. A debit above the available balance is refused."
    )

    def queryset(self, queryset):
        return queryset.select_related("customer")

    def state(self, wallet):
        balances = _balances(wallet)
        return f"{wallet.customer}: {balances}" if wallet.customer_id else balances[0].upper() + balances[1:]

    def describe(self, wallet):
        return "Credit or debit it by the amount below."

    def perform(self, *, request, obj, data, key):
        if Transfer.objects.filter(merchant_id=obj.merchant_id, idempotency_key=key).exists():
            return Outcome("This adjustment was already made; nothing changed.", changed=False, level=messages.WARNING)
        transfer = wallet_adjust(
            wallet=obj, amount=data["amount"], reason=data["reason"], staff_user=request.user, idempotency_key=key
        )
        obj.refresh_from_db(fields=["balance", "held"])
        verb = "Credited" if data["amount"] > 0 else "Debited"
        return Outcome(
            f"{verb} {money(abs(data['amount']), obj.currency)}; balance now {money(obj.balance, obj.currency)}.",
            details={
                "transfer": transfer.pk,
                "amount": data["amount"],
                "currency": obj.currency,
                "balance_after": obj.balance,
            },
        )


class VoidHold(OperatorAction):
    name = "void_hold"
    label = "Void…"
    title = "Void holds"
    permission = "wallets.void_hold"
    confirm_label = "Yes, void"
    atomic = True
    explanation = (
        "Voiding releases the reserved funds: the account's available balance goes back up by the hold's "
        "amount and nothing is posted. Only pending holds can be voided, and not those a workflow owns "
        "(a charge's hold is captured or voided by that charge)."
    )

    def queryset(self, queryset):
        return queryset.select_related("account")

    def skip_reason(self, hold):
        if hold.status != Hold.Status.PENDING:
            return f"it is {hold.status}; only a pending hold can be voided."
        if hold.owner:
            return f"it belongs to {hold.owner} and settles with it."
        return None

    def state(self, hold):
        expiry = f", expires {hold.expires_at:%Y-%m-%d %H:%M}" if hold.expires_at else ""
        return f"{hold.status.capitalize()}: {money(hold.amount, hold.account.currency)}{expiry}"

    def describe(self, hold):
        return f"Release {money(hold.amount, hold.account.currency)} back to the account's available balance."

    def perform(self, *, request, obj, data, key):
        hold = hold_void(hold=obj)
        return Outcome(
            f"Voided; {money(hold.amount, obj.account.currency)} released.",
            details={"amount": hold.amount, "currency": obj.account.currency, "account": hold.account_id},
        )


class RunLedgerAudit(OperatorAction):
    name = "run_ledger_audit"
    label = "Run the ledger audit (whole ledger)…"
    title = "Run the ledger audit"
    permission = "wallets.run_ledger_audit"
    confirm_label = "Run the audit now"
    needs_objects = False
    reason_required = False
    explanation = (
        "The audit checks the whole ledger: for each currency all balances sum to zero, every cached balance "
        "equals the sum of its entries, and no account that may not go negative is below zero. It reports "
        "and never repairs; the result is kept as a ledger audit row. It reads every entry, so it can take a "
        "while on a large ledger."
    )

    def perform_global(self, *, request, data, key):
        audit = ledger_audit_run(trigger="admin")
        violations = sum(len(rows) for rows in audit.report.get("violations", {}).values())
        verdict = "OK" if audit.ok else f"FAILED with {violations} violation{'s' if violations != 1 else ''}"
        return Outcome(
            f"Ledger audit {verdict} ({audit.duration_ms} ms).",
            details={"ok": audit.ok, "violations": violations, "duration_ms": audit.duration_ms},
            level=messages.SUCCESS if audit.ok else messages.ERROR,
            logged_object=audit,
            added=True,
            redirect_to=reverse("admin:wallets_ledgeraudit_change", args=[audit.pk]),
        )


ADJUST_BALANCE = AdjustBalance()
VOID_HOLD = VoidHold()
RUN_LEDGER_AUDIT = RunLedgerAudit()
