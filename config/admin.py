from django.contrib import admin

from .models import IdempotencyKey


@admin.register(IdempotencyKey)
class IdempotencyKeyAdmin(admin.ModelAdmin):
    list_display = ["key", "scope", "method", "path", "state", "response_status", "created_at"]
    list_filter = ["state", "method"]
    search_fields = ["key", "scope", "path"]

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False
