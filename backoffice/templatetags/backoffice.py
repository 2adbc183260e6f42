"""`{% operator_dashboard %}`: the dashboard, rendered inside the admin index (see apps.py)."""

from django import template

from backoffice.dashboard import dashboard_context

register = template.Library()


@register.inclusion_tag("backoffice/dashboard.html", takes_context=True)
def operator_dashboard(context):
    return dashboard_context(context["request"])
