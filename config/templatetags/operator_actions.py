"""Template helpers for the operator actions' audit trail (config/admin_actions.py)."""

from django import template

from config.admin_actions import audit_data

register = template.Library()


@register.filter
def operator_audit(entry):
    """The operator action an admin LogEntry records, as a dict, or None."""
    return audit_data(entry)


@register.filter
def audit_details(details) -> str:
    """The recorded details, on one line: "refund: 5f2c…, amount: 500"."""
    if not isinstance(details, dict):
        return ""
    parts = []
    for key, value in details.items():
        if isinstance(value, list):
            value = ", ".join(str(v) for v in value)
        parts.append(f"{key.replace('_', ' ')}: {value}")
    return " · ".join(parts)
