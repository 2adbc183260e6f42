"""Test helpers for operator actions (config/admin_actions.py): staff clients made the
way `manage.py seed` makes the groups, and the confirmation page's round trip."""

from dataclasses import dataclass
from urllib.parse import urlencode

from django.contrib.auth.models import Group
from django.test import Client
from django.urls import reverse

from config.admin_actions import audit_entries
from config.staff_groups import FINANCE, SUPPORT, staff_groups_ensure


def operator_url(model, action: str, objects=()) -> str:
    opts = model._meta
    url = reverse(f"admin:{opts.app_label}_{opts.model_name}_operator", args=[action])
    ids = ",".join(str(obj.pk) for obj in objects)
    return f"{url}?{urlencode({'ids': ids})}" if ids else url


@dataclass
class Operator:
    client: Client
    user: object

    def open(self, model, action: str, objects=()):
        """GET the confirmation page."""
        return self.client.get(operator_url(model, action, objects))

    def confirm(self, model, action: str, objects=(), **fields):
        """Open the page, then submit its form (with its one-time token) and `fields`."""
        page = self.open(model, action, objects)
        assert page.status_code == 200, page.status_code
        token = page.context["form"]["token"].value()
        data = {"token": str(token), **{k: "" if v is None else v for k, v in fields.items()}}
        return self.client.post(operator_url(model, action, objects), data)

    def forge(self, model, action: str, objects=(), **fields):
        """POST the confirmation without having been shown the page (a made-up token)."""
        import uuid

        return self.client.post(operator_url(model, action, objects), {"token": str(uuid.uuid4()), **fields})


@dataclass
class Operators:
    admin: Operator
    finance: Operator
    support: Operator


def make_operators(user_model) -> Operators:
    staff_groups_ensure()

    def make(username: str, group: str | None = None) -> Operator:
        if group is None:
            user = user_model.objects.create_superuser(username, f"{username}@example.com", "pw")
        else:
            user = user_model.objects.create_user(username, password="pw", is_staff=True)
            user.groups.add(Group.objects.get(name=group))
        client = Client()
        client.force_login(user)
        return Operator(client, user)

    return Operators(
        admin=make("ops-admin"), finance=make("ops-finance", FINANCE), support=make("ops-support", SUPPORT)
    )


def action_names(response) -> list[str]:
    """The actions in a changelist's action menu (none: the menu is not shown)."""
    form = response.context["action_form"]
    return [name for name, _ in form.fields["action"].choices] if form else []


def audit_of(obj) -> list[dict]:
    """The operator actions recorded on obj, newest first, with who did them."""
    return [{**data, "user": entry.user, "flag": entry.action_flag} for entry, data in audit_entries(obj)]
