from django.contrib import admin
from django.contrib.admin.models import LogEntry
from django.utils.html import format_html

from .admin_actions import audit_data, operator_action_classes
from .admin_tools import ReadOnlyAdmin, status_column
from .models import IdempotencyKey


@admin.register(IdempotencyKey)
class IdempotencyKeyAdmin(ReadOnlyAdmin):
    list_display = ["key", "scope", "method", "path", status_column("state"), "response_status", "created_at"]
    list_filter = ["state", "method", "created_at"]
    search_fields = ["key", "scope", "path"]
    date_hierarchy = "created_at"


class OperatorActionFilter(admin.SimpleListFilter):
    title = "operator action"
    parameter_name = "operator_action"

    def lookups(self, request, model_admin):
        return [("any", "Any operator action"), *((cls.name, cls.title) for cls in operator_action_classes())]

    def queryset(self, request, queryset):
        if self.value() == "any":
            return queryset.filter(change_message__contains='"operator_action": ')
        if self.value():
            return queryset.filter(change_message__contains=f'"operator_action": "{self.value()}"')
        return queryset


@admin.register(LogEntry)
class AuditTrailAdmin(ReadOnlyAdmin):
    """Every admin change, operator actions first among them (config/admin_actions.py):
    who did what to which object, when, and why. Read-only, for staff with view_logentry."""

    list_display = ["action_time", "user", "content_type", "object_link", "what", "reason"]
    list_filter = [
        OperatorActionFilter,
        ("content_type", admin.RelatedOnlyFieldListFilter),
        ("user", admin.RelatedOnlyFieldListFilter),
    ]
    search_fields = ["object_repr", "object_id", "change_message", "user__username"]
    list_select_related = ["user", "content_type"]
    date_hierarchy = "action_time"

    @admin.display(description="object")
    def object_link(self, entry):
        url = entry.get_admin_url()
        return format_html('<a href="{}">{}</a>', url, entry.object_repr) if url else entry.object_repr

    @admin.display(description="what")
    def what(self, entry):
        data = audit_data(entry)
        if data is None:
            return entry.get_change_message() or entry.get_action_flag_display()
        return f"{data['label']}: {data['result']}"

    @admin.display(description="reason")
    def reason(self, entry):
        data = audit_data(entry)
        return (data or {}).get("reason", "")
