"""The staff groups `manage.py seed` makes, so that an admin user is given a role, not a
hand-picked list of permissions:

- support: sees everything (view on every Paydesk model, and the audit trail) and
  changes nothing: no operator action, no edit.
- finance: what support sees, plus every operator action (config/admin_actions.py):
  refunds, cancellations, retries, wallet adjustments, voids, resends, the ledger audit.

Members must be staff (is_staff) to log in to the admin. The seed sets each group's
permissions to exactly these on every run: the groups are defined here, not by hand.
"""

from django.contrib.auth.models import Group, Permission
from django.db import transaction
from django.utils.module_loading import autodiscover_modules

from config.admin_actions import operator_action_permissions

SUPPORT, FINANCE = "support", "finance"
PAYDESK_APPS = ("paydesk", "payments", "wallets", "installments", "credits", "webhooks")
AUDIT_TRAIL = "admin.view_logentry"


def _permissions(names) -> list[Permission]:
    wanted = {tuple(name.split(".", 1)) for name in names}
    found = [
        p
        for p in Permission.objects.filter(codename__in=[codename for _, codename in wanted]).select_related(
            "content_type"
        )
        if (p.content_type.app_label, p.codename) in wanted
    ]
    missing = wanted - {(p.content_type.app_label, p.codename) for p in found}
    if missing:
        raise LookupError(f"Permissions missing (are the migrations applied?): {sorted(missing)}")
    return found


def support_permissions() -> list[Permission]:
    views = Permission.objects.filter(content_type__app_label__in=PAYDESK_APPS, codename__startswith="view_")
    return [*views, *_permissions([AUDIT_TRAIL])]


def finance_permissions() -> list[Permission]:
    autodiscover_modules("admin_actions")  # every app's operator actions, even outside the admin
    return [*support_permissions(), *_permissions(operator_action_permissions())]


@transaction.atomic
def staff_groups_ensure() -> dict[str, int]:
    """Create or update the support and finance groups. Idempotent. Returns
    {group name: number of permissions}."""
    counts = {}
    for name, permissions in ((SUPPORT, support_permissions()), (FINANCE, finance_permissions())):
        group, _ = Group.objects.get_or_create(name=name)
        group.permissions.set(permissions)
        counts[name] = len(permissions)
    return counts
