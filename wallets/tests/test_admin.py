import uuid

import pytest
from django.contrib.admin.helpers import ACTION_CHECKBOX_NAME
from django.db import connection
from django.urls import reverse

from wallets.models import Account, Entry, Hold, LedgerAudit, Transfer
from wallets.services import hold_create
from wallets.tests.factories import WalletFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def staff_client(client, django_user_model):
    user = django_user_model.objects.create_superuser("ops", "ops@example.com", "pw")
    client.force_login(user)
    client.user = user
    return client


VIEW_PERMS = ["view_account", "view_wallet", "view_transfer", "view_entry", "view_hold", "view_ledgeraudit"]
ACTION_PERMS = ["adjust_balance", "void_hold", "run_ledger_audit"]


def _staff_with(django_user_model, username: str, codenames: list[str]):
    from django.contrib.auth.models import Permission
    from django.test import Client

    user = django_user_model.objects.create_user(username, password="pw", is_staff=True)
    perms = Permission.objects.filter(content_type__app_label="wallets", codename__in=codenames)
    assert perms.count() == len(codenames), "a permission is missing: is the migration applied?"
    user.user_permissions.set(perms)
    client = Client()
    client.force_login(user)
    client.user = user
    return client


def test_changelists_and_detail_pages_render(staff_client, customer):
    wallet = WalletFactory(customer=customer, balance=1234)
    hold_create(account=wallet, amount=34)
    transfer = Transfer.objects.first()
    for name in ["account", "wallet", "transfer", "entry", "hold", "ledgeraudit"]:
        response = staff_client.get(reverse(f"admin:wallets_{name}_changelist"))
        assert response.status_code == 200, name
    assert staff_client.get(reverse("admin:wallets_transfer_change", args=[transfer.pk])).status_code == 200
    assert b"$12.34" in staff_client.get(reverse("admin:wallets_wallet_changelist")).content
    assert staff_client.get(reverse("admin:wallets_transfer_changelist") + "?q=factory").status_code == 200


def test_ledger_is_read_only_in_admin(staff_client, customer):
    wallet = WalletFactory(customer=customer, balance=100)
    entry = Entry.objects.filter(account=wallet).first()
    assert staff_client.get(reverse("admin:wallets_entry_add")).status_code == 403
    response = staff_client.post(reverse("admin:wallets_entry_delete", args=[entry.pk]), {"post": "yes"})
    assert response.status_code == 403
    response = staff_client.post(reverse("admin:wallets_wallet_change", args=[wallet.pk]), {"balance": 999_999})
    assert response.status_code == 403
    assert Account.objects.get(pk=wallet.pk).balance == 100
    assert Entry.objects.filter(pk=entry.pk).exists()


def _adjust_form(client, wallet) -> dict:
    """Open the "adjust balance" page; return the POST data of its form (with its one-time token)."""
    base = {"action": "adjust_balance", ACTION_CHECKBOX_NAME: [str(wallet.pk)]}
    page = client.post(reverse("admin:wallets_wallet_changelist"), base)
    assert page.status_code == 200 and b"Adjust wallet balance" in page.content
    token = page.context["form"]["token"].value()
    assert f'name="token" value="{token}"'.encode() in page.content
    return {**base, "token": str(token)}


def test_adjust_balance_action_needs_a_reason_and_records_the_staff_user(staff_client, customer):
    wallet = WalletFactory(customer=customer, balance=100)
    url = reverse("admin:wallets_wallet_changelist")
    base = _adjust_form(staff_client, wallet)

    no_reason = staff_client.post(url, {**base, "apply": "1", "amount": "50", "reason": ""})
    assert no_reason.status_code == 200  # the form again, with its error
    assert Account.objects.get(pk=wallet.pk).balance == 100

    done = staff_client.post(url, {**base, "apply": "1", "amount": "-40", "reason": "refund of fee"})
    assert done.status_code == 302
    assert Account.objects.get(pk=wallet.pk).balance == 60
    transfer = Transfer.objects.get(kind="adjustment")
    assert (transfer.description, transfer.created_by, transfer.amount) == ("refund of fee", staff_client.user, 40)

    too_much = staff_client.post(
        url, {**_adjust_form(staff_client, wallet), "apply": "1", "amount": "-61", "reason": "x"}
    )
    assert too_much.status_code == 302
    assert Account.objects.get(pk=wallet.pk).balance == 60


@pytest.mark.parametrize("amount", [str(10**19), str(-(10**19)), str(10**12 + 1), str(-(10**12) - 1)])
def test_adjust_balance_beyond_the_maximum_amount_is_a_form_error_not_a_500(staff_client, customer, amount):
    wallet = WalletFactory(customer=customer, balance=100)
    url = reverse("admin:wallets_wallet_changelist")
    page = staff_client.post(url, {**_adjust_form(staff_client, wallet), "apply": "1", "amount": amount, "reason": "x"})
    assert page.status_code == 200
    assert page.context["form"].errors["amount"]
    assert Account.objects.get(pk=wallet.pk).balance == 100


def test_a_double_submitted_adjustment_adjusts_once(staff_client, customer):
    wallet = WalletFactory(customer=customer, balance=100)
    url = reverse("admin:wallets_wallet_changelist")
    form = {**_adjust_form(staff_client, wallet), "apply": "1", "amount": "-30", "reason": "fee"}

    first = staff_client.post(url, form, follow=True)
    second = staff_client.post(url, form, follow=True)

    assert Account.objects.get(pk=wallet.pk).balance == 70
    assert Transfer.objects.filter(kind="adjustment").count() == 1
    assert b"Adjusted" in first.content
    assert b"already made" in second.content
    # A fresh form is a new adjustment.
    staff_client.post(url, {**_adjust_form(staff_client, wallet), "apply": "1", "amount": "-30", "reason": "fee"})
    assert Account.objects.get(pk=wallet.pk).balance == 40


def test_void_hold_action(staff_client, customer):
    wallet = WalletFactory(customer=customer, balance=100)
    hold = hold_create(account=wallet, amount=70)
    url = reverse("admin:wallets_hold_changelist")
    staff_client.post(url, {"action": "void_holds", ACTION_CHECKBOX_NAME: [str(hold.pk)]})
    assert Hold.objects.get(pk=hold.pk).status == "voided"
    assert Account.objects.get(pk=wallet.pk).held == 0


def test_run_ledger_audit_button_records_a_run(staff_client, customer):
    WalletFactory(customer=customer, balance=100)
    response = staff_client.post(reverse("admin:wallets_ledgeraudit_run"))
    assert response.status_code == 302
    assert LedgerAudit.objects.get().ok


@pytest.mark.corrupts_ledger
def test_a_failing_audit_is_shown_to_staff(staff_client, customer):
    wallet = WalletFactory(customer=customer, balance=100)
    with connection.cursor() as cursor:
        cursor.execute(
            "UPDATE wallets_account SET balance = balance + 1 WHERE id = %s",
            [wallet.pk.hex if connection.vendor == "sqlite" else wallet.pk],
        )
    staff_client.post(reverse("admin:wallets_ledgeraudit_run"))
    assert not LedgerAudit.objects.get().ok
    page = staff_client.get(reverse("admin:wallets_ledgeraudit_changelist"))
    assert b"FAILED" in page.content
    assert b"FAILED" in staff_client.get(reverse("admin:wallets_account_changelist")).content


def _try_every_action(client, wallet, hold) -> None:
    """Post each money-moving or audit action the way the admin forms do."""
    wallets_url = reverse("admin:wallets_wallet_changelist")
    adjust = {"action": "adjust_balance", ACTION_CHECKBOX_NAME: [str(wallet.pk)]}
    client.post(wallets_url, adjust)  # the intermediate page: only shown to the permitted
    client.post(wallets_url, {**adjust, "apply": "1", "amount": "-40", "reason": "x", "token": uuid.uuid4().hex})
    client.post(
        reverse("admin:wallets_hold_changelist"), {"action": "void_holds", ACTION_CHECKBOX_NAME: [str(hold.pk)]}
    )
    for name, selected in (("account", wallet.pk), ("wallet", wallet.pk), ("ledgeraudit", 0)):
        client.post(  # "select all": the audit ignores the selection, but the admin wants one
            reverse(f"admin:wallets_{name}_changelist"),
            {"action": "run_ledger_audit", "select_across": "1", ACTION_CHECKBOX_NAME: [str(selected)]},
        )


def test_view_only_staff_can_look_but_not_move_money_void_or_audit(django_user_model, customer):
    viewer = _staff_with(django_user_model, "viewer", VIEW_PERMS)
    wallet = WalletFactory(customer=customer, balance=100)
    hold = hold_create(account=wallet, amount=30)
    transfers = Transfer.objects.count()

    page = viewer.get(reverse("admin:wallets_wallet_changelist"))
    assert page.status_code == 200
    assert b"adjust_balance" not in page.content and b"run_ledger_audit" not in page.content
    assert b"void_holds" not in viewer.get(reverse("admin:wallets_hold_changelist")).content
    audits_page = viewer.get(reverse("admin:wallets_ledgeraudit_changelist"))
    assert audits_page.status_code == 200 and b"Run ledger audit now" not in audits_page.content

    _try_every_action(viewer, wallet, hold)
    assert viewer.post(reverse("admin:wallets_ledgeraudit_run")).status_code == 403

    assert Account.objects.get(pk=wallet.pk).balance == 100
    assert Transfer.objects.count() == transfers
    assert Hold.objects.get(pk=hold.pk).status == "pending"
    assert not LedgerAudit.objects.exists()


def test_staff_with_the_action_permissions_can_run_them(django_user_model, customer):
    operator = _staff_with(django_user_model, "operator", VIEW_PERMS + ACTION_PERMS)
    assert not operator.user.is_superuser
    wallet = WalletFactory(customer=customer, balance=100)
    hold = hold_create(account=wallet, amount=30)

    page = operator.get(reverse("admin:wallets_wallet_changelist"))
    assert b"adjust_balance" in page.content and b"run_ledger_audit" in page.content
    assert b"Run ledger audit now" in operator.get(reverse("admin:wallets_ledgeraudit_changelist")).content

    _try_every_action(operator, wallet, hold)
    assert operator.post(reverse("admin:wallets_ledgeraudit_run")).status_code == 302

    assert Account.objects.get(pk=wallet.pk).balance == 60
    assert Transfer.objects.get(kind="adjustment").created_by == operator.user
    assert Hold.objects.get(pk=hold.pk).status == "voided"
    assert LedgerAudit.objects.count() == 4  # three actions and the button


@pytest.mark.parametrize("perm", ACTION_PERMS)
def test_each_action_needs_its_own_permission(django_user_model, customer, perm):
    """One action permission does not open the others."""
    client = _staff_with(django_user_model, f"only-{perm}", VIEW_PERMS + [perm])
    wallet = WalletFactory(customer=customer, balance=100)
    hold = hold_create(account=wallet, amount=30)

    _try_every_action(client, wallet, hold)

    assert (Account.objects.get(pk=wallet.pk).balance == 60) == (perm == "adjust_balance")
    assert (Hold.objects.get(pk=hold.pk).status == "voided") == (perm == "void_hold")
    assert LedgerAudit.objects.exists() == (perm == "run_ledger_audit")
