from django.contrib import admin, messages

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
    list_display = ["name", "status", "region", "category", "created_at"]
    list_filter = ["status", "region", "category"]
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

    def save_model(self, request, obj, form, change):
        super().save_model(request, obj, form, change)
        if not change:
            subscription_create(merchant=obj)  # every merchant starts on the default plan


@admin.register(ApiKey)
class ApiKeyAdmin(admin.ModelAdmin):
    list_display = ["prefix", "merchant", "name", "livemode", "created_at", "last_used_at", "revoked_at"]
    list_filter = ["livemode", ("revoked_at", admin.EmptyFieldListFilter)]
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
    list_display = ["external_id", "name", "email", "merchant", "stripe_customer_id", "created_at"]
    list_filter = [("merchant", admin.RelatedOnlyFieldListFilter)]
    search_fields = ["external_id", "email", "name", "id", "stripe_customer_id"]
    list_select_related = ["merchant"]
    raw_id_fields = ["merchant"]


@admin.register(Region)
class RegionAdmin(admin.ModelAdmin):
    list_display = ["code", "name", "currency", "default_provider"]
    search_fields = ["code", "name"]


@admin.register(Category)
class CategoryAdmin(admin.ModelAdmin):
    list_display = ["code", "name"]
    search_fields = ["code", "name"]
