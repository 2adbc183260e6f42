from django.contrib import admin, messages

from config.admin_tools import flag_column, id_column, list_url, related_links, status_column, words_filter

from .models import ApiKey, Category, Customer, Merchant, Region, Subscription
from .services import api_key_create, api_key_revoke, subscription_create

__all__: list[str] = []


class ApiKeyInline(admin.TabularInline):
    model = ApiKey
    extra = 0
    can_delete = False
    fields = ["prefix", "name", "livemode", "created_at", "last_used_at", "revoked_at"]
    readonly_fields = fields
    show_change_link = True

    def has_add_permission(self, request, obj=None):
        return False  # keys are made by the "Create API key" action, which shows the key once


class SubscriptionInline(admin.StackedInline):
    model = Subscription
    can_delete = False
    readonly_fields = ["tokens_remaining", "period_start", "period_end"]


@admin.register(Merchant)
class MerchantAdmin(admin.ModelAdmin):
    list_display = ["name", status_column(), "region", "category", "created_at", id_column()]
    list_filter = ["status", "region", "category"]
    readonly_fields = ["related"]
    search_fields = ["name", "id"]
    list_select_related = ["region", "category"]
    inlines = [SubscriptionInline, ApiKeyInline]
    actions = ["create_test_key", "create_live_key"]

    def _create_key(self, request, queryset, livemode: bool):
        for merchant in queryset:
            _, raw_key = api_key_create(merchant=merchant, livemode=livemode, name=f"admin:{request.user}")
            messages.warning(request, f"New API key for {merchant.name} (shown once, copy it now): {raw_key}")

    @admin.action(description="Create a test API key (shown once)", permissions=["change"])
    def create_test_key(self, request, queryset):
        self._create_key(request, queryset, livemode=False)

    @admin.action(description="Create a live API key (shown once)", permissions=["change"])
    def create_live_key(self, request, queryset):
        self._create_key(request, queryset, livemode=True)

    def get_inlines(self, request, obj):
        return self.inlines if obj is not None else []

    @admin.display(description="links")
    def related(self, obj):
        if obj is None or obj.pk is None:
            return "—"
        by_merchant = {"merchant__id__exact": obj.pk}
        return related_links(
            [
                ("Payments", list_url("payments.payment", **by_merchant), None),
                ("Charges", list_url("payments.charge", **by_merchant), None),
                ("Customers", list_url("payments.customer", **by_merchant), None),
                ("Ledger accounts", list_url("wallets.account", **by_merchant), None),
                ("Installment orders", list_url("installments.installmentorder", **by_merchant), None),
                ("Webhook events", list_url("webhooks.outboundevent", **by_merchant), None),
            ]
        )

    def save_model(self, request, obj, form, change):
        super().save_model(request, obj, form, change)
        if not change:
            subscription_create(merchant=obj)  # every merchant starts on the default plan


@admin.register(ApiKey)
class ApiKeyAdmin(admin.ModelAdmin):
    list_display = [
        "prefix",
        "merchant",
        "name",
        flag_column("livemode", yes="live", no="test", yes_tone="amber", description="mode"),
        "created_at",
        "last_used_at",
        "revoked_at",
    ]
    list_filter = [
        words_filter("livemode", title="mode", yes="Live", no="Test"),
        ("revoked_at", admin.EmptyFieldListFilter),
        ("merchant", admin.RelatedOnlyFieldListFilter),
    ]
    search_fields = ["prefix", "merchant__name", "name"]
    list_select_related = ["merchant"]
    readonly_fields = ["merchant", "prefix", "livemode", "created_at", "last_used_at", "revoked_at"]
    fields = ["merchant", "name", "prefix", "livemode", "created_at", "last_used_at", "revoked_at"]
    actions = ["revoke"]

    def has_add_permission(self, request):
        return False

    @admin.action(description="Revoke selected keys", permissions=["change"])
    def revoke(self, request, queryset):
        for api_key in queryset.filter(revoked_at__isnull=True):
            api_key_revoke(api_key=api_key)
        messages.success(request, "Revoked.")


@admin.register(Subscription)
class SubscriptionAdmin(admin.ModelAdmin):
    list_display = ["merchant", "plan", "quota", "tokens_remaining", "period_start", "period_end"]
    list_filter = ["plan"]
    search_fields = ["merchant__name"]
    list_select_related = ["merchant"]
    raw_id_fields = ["merchant"]


@admin.register(Customer)
class CustomerAdmin(admin.ModelAdmin):
    list_display = ["external_id", "name", "email", "merchant", "stripe_customer_id", "created_at", id_column()]
    list_filter = [("merchant", admin.RelatedOnlyFieldListFilter), "created_at"]
    search_fields = ["external_id", "email", "name", "=id", "stripe_customer_id"]
    search_help_text = "External id, email, name, customer id (exact) or Stripe customer id."
    list_select_related = ["merchant"]
    raw_id_fields = ["merchant"]
    date_hierarchy = "created_at"
    readonly_fields = ["related"]

    @admin.display(description="links")
    def related(self, obj):
        if obj is None or obj.pk is None:
            return "—"
        by_customer = {"customer__id__exact": obj.pk}
        return related_links(
            [
                ("Payments", list_url("payments.payment", **by_customer), None),
                ("Charges", list_url("payments.charge", **by_customer), None),
                ("Wallets", list_url("wallets.wallet", **by_customer), None),
                ("Installment orders", list_url("installments.installmentorder", **by_customer), None),
                ("Credit grants", list_url("credits.grant", **by_customer), None),
            ]
        )


@admin.register(Region)
class RegionAdmin(admin.ModelAdmin):
    list_display = ["code", "name", "currency", "default_provider"]
    search_fields = ["code", "name"]


@admin.register(Category)
class CategoryAdmin(admin.ModelAdmin):
    list_display = ["code", "name"]
    search_fields = ["code", "name"]
