"""The staff groups `manage.py seed` makes, and the operator actions' shared machinery
(config/admin_actions.py): what support and finance may do, and the audit trail."""

import io

import pytest
from django.contrib import admin
from django.contrib.auth.models import Group
from django.core.management import call_command
from django.urls import reverse

from config.admin_actions import OperatorActionsMixin, operator_action_permissions
from config.staff_groups import FINANCE, SUPPORT
from config.tests.operator_actions_support import operator_url
from payments.models import Payment
from payments.services import payment_create, payment_settle_from_provider

pytestmark = pytest.mark.django_db


def _codes(group_name: str) -> set[str]:
    group = Group.objects.get(name=group_name)
    return {f"{p.content_type.app_label}.{p.codename}" for p in group.permissions.select_related("content_type")}


def _registered_actions():
    return [
        (model, action)
        for model, model_admin in admin.site._registry.items()
        if isinstance(model_admin, OperatorActionsMixin)
        for action in model_admin.operator_actions
    ]


def test_seed_makes_the_groups_and_a_second_run_changes_nothing():
    out = io.StringIO()
    call_command("seed", stdout=out)
    assert "Staff groups: support" in out.getvalue()
    first = {name: _codes(name) for name in (SUPPORT, FINANCE)}
    group_ids = set(Group.objects.values_list("pk", flat=True))

    Group.objects.get(name=SUPPORT).permissions.clear()  # tampered with by hand
    call_command("seed", stdout=io.StringIO())

    assert {name: _codes(name) for name in (SUPPORT, FINANCE)} == first
    assert set(Group.objects.values_list("pk", flat=True)) == group_ids


def test_support_may_view_every_paydesk_model_and_nothing_else():
    call_command("seed", stdout=io.StringIO())
    support = _codes(SUPPORT)
    assert all(code.split(".")[1].startswith("view_") for code in support), support
    for model in admin.site._registry:
        label = model._meta.app_label
        if label in ("paydesk", "payments", "wallets", "installments", "credits", "webhooks"):
            assert f"{label}.view_{model._meta.model_name}" in support, model
    assert "admin.view_logentry" in support  # the audit trail


def test_finance_holds_every_operator_action_and_support_none():
    call_command("seed", stdout=io.StringIO())
    finance, support = _codes(FINANCE), _codes(SUPPORT)
    permissions = {action.permission for _, action in _registered_actions()}
    assert len(permissions) >= 14
    assert permissions == set(operator_action_permissions())
    assert permissions <= finance and not permissions & support
    assert support <= finance
    assert not {c for c in finance if c.split(".")[1].startswith(("add_", "change_", "delete_"))}


def test_every_operator_action_checks_its_permission_on_its_page(operators):
    """Support is refused every confirmation page of every admin, with or without objects."""
    for model, action in _registered_actions():
        assert operators.support.open(model, action.name).status_code == 403, action.name
        assert operators.support.forge(model, action.name, reason="x").status_code == 403, action.name


@pytest.fixture
def payment(merchant):
    payment = payment_create(merchant=merchant, order_id="o-1", amount=1000, currency="usd")
    payment_settle_from_provider(
        payment_id=payment.pk, outcome="succeeded", amount=1000, currency="usd", source="provider_webhook", data={}
    )
    return Payment.objects.get(pk=payment.pk)


def test_an_unknown_action_is_404_and_bad_ids_go_back_to_the_list(operators, payment):
    client = operators.admin.client
    assert client.get(reverse("admin:payments_payment_operator", args=["delete_everything"])).status_code == 404
    for ids in ("", "not-a-uuid", "00000000-0000-0000-0000-000000000000"):
        response = client.get(reverse("admin:payments_payment_operator", args=["refund_payment"]) + f"?ids={ids}")
        assert response.status_code == 302 and response["Location"] == "/admin/payments/payment/", ids


def test_too_many_objects_at_once_are_refused(operators, merchant, payment, monkeypatch):
    from payments.admin_actions import REFUND

    monkeypatch.setattr(REFUND, "max_objects", 1)
    other = payment_create(merchant=merchant, order_id="o-2", amount=1000, currency="usd")
    response = operators.admin.client.post(
        "/admin/payments/payment/",
        {"action": "refund_payment", "_selected_action": [str(payment.pk), str(other.pk)]},
        follow=True,
    )
    assert b"select at most 1 at a time" in response.content
    assert operators.admin.open(Payment, "refund_payment", [payment, other]).status_code == 302


def test_the_audit_trail_lists_operator_actions_for_support_too(operators, payment):
    operators.finance.confirm(Payment, "refund_payment", [payment], amount=100, reason="audit me")
    listing = operators.support.client.get("/admin/admin/logentry/?operator_action=refund_payment")
    assert listing.status_code == 200
    html = listing.content.decode()
    assert "audit me" in html and "Refund: Refunded $1.00" in html and "ops-finance" in html
    assert (
        operators.support.client.get("/admin/admin/logentry/?operator_action=cancel_payment").context["cl"].result_count
        == 0
    )


def test_ordinary_history_entries_still_read_as_django_writes_them(operators, merchant):
    """The history page override shows operator actions as such, and the rest as before."""
    from django.contrib.admin.models import CHANGE, LogEntry
    from django.contrib.contenttypes.models import ContentType

    LogEntry.objects.create(
        user=operators.admin.user,
        content_type=ContentType.objects.get_for_model(merchant),
        object_id=str(merchant.pk),
        object_repr=str(merchant),
        action_flag=CHANGE,
        change_message='[{"changed": {"fields": ["Name"]}}]',
    )
    page = operators.admin.client.get(reverse("admin:payments_merchant_history", args=[merchant.pk]))
    assert b"Changed Name." in page.content


def test_the_object_page_shows_buttons_only_for_what_applies(operators, payment):
    page = operators.finance.client.get(reverse("admin:payments_payment_change", args=[payment.pk])).content.decode()
    assert operator_url(Payment, "refund_payment", [payment]).replace("&", "&amp;") in page
    assert "Cancel…" not in page  # a succeeded payment cannot be canceled
