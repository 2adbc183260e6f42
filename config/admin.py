from django.contrib import admin

from .admin_tools import ReadOnlyAdmin, status_column
from .models import IdempotencyKey


@admin.register(IdempotencyKey)
class IdempotencyKeyAdmin(ReadOnlyAdmin):
    list_display = ["key", "scope", "method", "path", status_column("state"), "response_status", "created_at"]
    list_filter = ["state", "method", "created_at"]
    search_fields = ["key", "scope", "path"]
    date_hierarchy = "created_at"
