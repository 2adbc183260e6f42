"""Back office for credits. Accounts, grants, debits and revocations are read-only;
staff change balances only through actions that call services, with a mandatory reason
on an intermediate form: "grant credits" (credits_grant) and "revoke credits"
(credits_revoke), on accounts (one customer) and on grants (that grant's customer,
its remaining units first). Packs are edited here."""

from django import forms
from django.contrib import admin, messages
from django.http import HttpResponseRedirect
from django.template.response import TemplateResponse

from config.admin_tools import ReadOnlyAdmin, flag_column, money_column, words_filter
from config.errors import DomainError

from .models import CreditAccount, CreditPack, Debit, Grant, Revocation, StripeInvoicePayment
from .services import MAX_UNITS, credits_grant, credits_revoke


class UnitsReasonForm(forms.Form):
    units = forms.IntegerField(min_value=1, max_value=MAX_UNITS, help_text="Whole credits.")
    reason = forms.CharField(widget=forms.Textarea(attrs={"rows": 3}), help_text="Required; kept on the ledger.")

    def clean_reason(self):
        reason = self.cleaned_data["reason"].strip()
        if not reason:
            raise forms.ValidationError("A reason is required.")
        return reason


def _units_action(modeladmin, request, queryset, *, action: str, title: str, customer_of, grant_of=None):
    """The intermediate page of grant/revoke: one selected row, units and a reason, then the service."""
    if queryset.count() != 1:
        modeladmin.message_user(request, "Select exactly one row.", messages.WARNING)
        return None
    obj = queryset.get()
    customer = customer_of(obj)
    grant = grant_of(obj) if grant_of else None
    form = UnitsReasonForm(request.POST if "apply" in request.POST else None)
    if "apply" in request.POST and form.is_valid():
        units, reason = form.cleaned_data["units"], form.cleaned_data["reason"]
        try:
            if action.startswith("grant"):
                credits_grant(
                    customer=customer, units=units, source=Grant.Source.STAFF, reason=reason, created_by=request.user
                )
                modeladmin.message_user(request, f"Granted {units} credits to {customer}.", messages.SUCCESS)
            else:
                revocation = credits_revoke(
                    customer=customer, units=units, reason=reason, grant=grant, created_by=request.user
                )
                level = messages.WARNING if revocation.shortfall else messages.SUCCESS
                modeladmin.message_user(
                    request,
                    f"Revoked {revocation.revoked} of {units} credits from {customer}"
                    + (f" (shortfall {revocation.shortfall}: already spent)." if revocation.shortfall else "."),
                    level,
                )
        except DomainError as exc:
            modeladmin.message_user(request, f"Nothing changed: {exc.message}", messages.ERROR)
            return None
        return HttpResponseRedirect(request.get_full_path())
    from .selectors import credits_balance

    context = {
        **modeladmin.admin_site.each_context(request),
        "title": title,
        "opts": modeladmin.model._meta,
        "obj": obj,
        "customer": customer,
        "grant": grant,
        "balance": credits_balance(customer=customer),
        "form": form,
        "action": action,
        "action_checkbox_name": admin.helpers.ACTION_CHECKBOX_NAME,
    }
    return TemplateResponse(request, "admin/credits/units_reason.html", context)


@admin.register(CreditAccount)
class CreditAccountAdmin(ReadOnlyAdmin):
    list_display = ["customer", "merchant", money_column("balance"), "created_at", "id"]
    list_filter = [("merchant", admin.RelatedOnlyFieldListFilter)]
    search_fields = ["=id", "customer__external_id", "customer__email", "merchant__name"]
    list_select_related = ["merchant", "customer"]
    readonly_fields = ["id", "merchant", "customer", "balance", "created_at"]
    fields = readonly_fields
    actions = ["grant_credits", "revoke_credits"]

    def get_queryset(self, request):
        return super().get_queryset(request).filter(customer__isnull=False)

    @admin.action(description="Grant credits (with a reason)")
    def grant_credits(self, request, queryset):
        return _units_action(
            self, request, queryset, action="grant_credits", title="Grant credits", customer_of=lambda a: a.customer
        )

    @admin.action(description="Revoke credits (with a reason)")
    def revoke_credits(self, request, queryset):
        return _units_action(
            self, request, queryset, action="revoke_credits", title="Revoke credits", customer_of=lambda a: a.customer
        )


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
class GrantAdmin(ReadOnlyAdmin):
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
    actions = ["revoke_credits"]

    @admin.action(description="Revoke credits of this grant (with a reason)")
    def revoke_credits(self, request, queryset):
        return _units_action(
            self,
            request,
            queryset,
            action="revoke_credits",
            title="Revoke credits",
            customer_of=lambda g: g.customer,
            grant_of=lambda g: g,
        )


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
