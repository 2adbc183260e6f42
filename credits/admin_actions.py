"""Operator actions on credits (config/admin_actions.py): grant or revoke a customer's
credits, with a reason, through credits_grant / credits_revoke."""

from django import forms
from django.contrib import messages

from config.admin_actions import OperatorAction, OperatorActionForm, Outcome

from .models import Grant
from .selectors import credits_balance
from .services import MAX_UNITS, credits_grant, credits_revoke


class UnitsForm(OperatorActionForm):
    units = forms.IntegerField(min_value=1, max_value=MAX_UNITS, label="Credits", help_text="Whole credits.")


class _CreditsAction(OperatorAction):
    form_class = UnitsForm
    single = True
    atomic = True

    def customer_of(self, obj):
        return obj.customer

    def queryset(self, queryset):
        return queryset.select_related("customer")

    def state(self, obj):
        balance = credits_balance(customer=self.customer_of(obj))
        if isinstance(obj, Grant):
            return f"{obj.remaining} of {obj.units} left of this grant; the customer has {balance} credits"
        return f"{balance} credits"


class GrantCredits(_CreditsAction):
    name = "grant_credits"
    label = "Grant credits…"
    title = "Grant credits"
    permission = "credits.grant_credits"
    confirm_label = "Yes, grant"
    explanation = (
        "The credits are issued from the merchant's credit issuance account to the customer's credit account "
        "(a ledger transfer), recorded as a staff grant with your user and the reason, and announced to the "
        "merchant (credits.granted)."
    )

    def describe(self, account):
        return f"Add the credits below to {account.customer}."

    def perform(self, *, request, obj, data, key):
        customer = self.customer_of(obj)
        grant, _ = credits_grant(
            customer=customer,
            units=data["units"],
            source=Grant.Source.STAFF,
            reason=data["reason"],
            created_by=request.user,
        )
        return Outcome(
            f"Granted {data['units']} credits to {customer}; balance now {credits_balance(customer=customer)}.",
            details={"grant": grant.pk, "units": data["units"]},
        )


class RevokeCredits(_CreditsAction):
    name = "revoke_credits"
    label = "Revoke credits…"
    title = "Revoke credits"
    permission = "credits.revoke_credits"
    confirm_label = "Yes, revoke"
    explanation = (
        "Up to the number below is taken back from the customer, never below zero: what was already spent "
        "is recorded as the shortfall. From a grant, that grant's remaining credits go first. Recorded with "
        "your user and the reason, and announced to the merchant (credits.revoked)."
    )

    def grant_of(self, obj):
        return obj if isinstance(obj, Grant) else None

    def describe(self, obj):
        if isinstance(obj, Grant):
            return f"Take back credits from {obj.customer}, this grant's remaining ones first."
        return f"Take back credits from {obj.customer}."

    def perform(self, *, request, obj, data, key):
        customer = self.customer_of(obj)
        revocation = credits_revoke(
            customer=customer,
            units=data["units"],
            reason=data["reason"],
            grant=self.grant_of(obj),
            created_by=request.user,
        )
        shortfall = f" (shortfall {revocation.shortfall}: already spent)" if revocation.shortfall else ""
        return Outcome(
            f"Revoked {revocation.revoked} of {data['units']} credits from {customer}{shortfall}.",
            details={
                "revocation": revocation.pk,
                "requested": data["units"],
                "revoked": revocation.revoked,
                "shortfall": revocation.shortfall,
            },
            level=messages.WARNING if revocation.shortfall else messages.SUCCESS,
        )


GRANT = GrantCredits()
REVOKE = RevokeCredits()
