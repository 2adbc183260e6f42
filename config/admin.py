from django.contrib import admin

from .admin_tools import ReadOnlyAdmin
from .models import IdempotencyKey


@admin.register(IdempotencyKey)
class IdempotencyKeyAdmin(ReadOnlyAdmin):
    list_display = ["key", "scope", "method", "path", "state", "response_status", "created_at"]
    list_filter = ["state", "method"]
    search_fields = ["key", "scope", "path"]
