import uuid

import pytest
from django.contrib.admin.helpers import ACTION_CHECKBOX_NAME
from django.contrib.admin.models import ADDITION
from django.db import connection
from django.urls import reverse

from config.tests.operator_actions_support import action_names, audit_of, operator_url
from wallets.models import Account, Entry, Hold, LedgerAudit, Transfer, Wallet
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


def _adjust_page(client, wallet):
    return client.get(operator_url(Wallet, "adjust_balance", [wallet]))


def _adjust(client, wallet, *, token=None, **fields):
    """Open the "adjust balance" page (unless given its token) and submit it."""
    if token is None:
        page = _adjust_page(client, wallet)
        assert page.status_code == 200 and b"Adjust wallet balance" in page.content
        token = page.context["form"]["token"].value()
        assert f'name="token" value="{token}"'.encode() in page.content
    return client.post(operator_url(Wallet, "adjust_balance", [wallet]), {"token": str(token), **fields})


def test_the_adjust_page_says_what_it_does_in_which_units(staff_client, customer):
    wallet = WalletFactory(customer=customer, balance=1234)
    page = _adjust_page(staff_client, wallet).content.decode()
    assert f"{customer}: balance $12.34" in page
    assert "Amount, in minor units of USD (100 = $1.00), signed" in page
    assert "500 adds $5.00" in page and "Available now: $12.34" in page


def test_adjust_balance_action_needs_a_reason_and_records_the_staff_user(staff_client, customer):
    wallet = WalletFactory(customer=customer, balance=100)

    no_reason = _adjust(staff_client, wallet, amount="50", reason="")
    assert no_reason.status_code == 200  # the form again, with its error
    assert no_reason.context["form"].errors["reason"]
    assert Account.objects.get(pk=wallet.pk).balance == 100

    done = _adjust(staff_client, wallet, amount="-40", reason="refund of fee")
    assert done.status_code == 302
    assert Account.objects.get(pk=wallet.pk).balance == 60
    transfer = Transfer.objects.get(kind="adjustment")
    assert (transfer.description, transfer.created_by, transfer.amount) == ("refund of fee", staff_client.user, 40)
    (entry,) = audit_of(Wallet.objects.get(pk=wallet.pk))
    assert (entry["reason"], entry["user"], entry["details"]["amount"]) == ("refund of fee", staff_client.user, -40)
    assert entry["details"]["transfer"] == str(transfer.pk)

    too_much = _adjust(staff_client, wallet, amount="-61", reason="x")
    assert too_much.status_code == 200  # refused by the service: shown on the form
    assert b"Nothing changed" in too_much.content
    assert Account.objects.get(pk=wallet.pk).balance == 60
    assert len(audit_of(Wallet.objects.get(pk=wallet.pk))) == 1


@pytest.mark.parametrize("amount", [str(10**19), str(-(10**19)), str(10**12 + 1), str(-(10**12) - 1), "0", "1.5"])
def test_adjust_balance_beyond_the_maximum_amount_is_a_form_error_not_a_500(staff_client, customer, amount):
    wallet = WalletFactory(customer=customer, balance=100)
    page = _adjust(staff_client, wallet, amount=amount, reason="x")
    assert page.status_code == 200
    assert page.context["form"].errors["amount"]
    assert Account.objects.get(pk=wallet.pk).balance == 100


def test_a_double_submitted_adjustment_adjusts_once(staff_client, customer):
    wallet = WalletFactory(customer=customer, balance=100)
    token = _adjust_page(staff_client, wallet).context["form"]["token"].value()
    url = operator_url(Wallet, "adjust_balance", [wallet])
    form = {"token": str(token), "amount": "-30", "reason": "fee"}

    first = staff_client.post(url, form, follow=True)
    second = staff_client.post(url, form, follow=True)

    assert Account.objects.get(pk=wallet.pk).balance == 70
    assert Transfer.objects.filter(kind="adjustment").count() == 1
    assert b"Debited $0.30" in first.content
    assert b"Already done" in second.content
    # A fresh page is a new adjustment.
    _adjust(staff_client, wallet, amount="-30", reason="fee")
    assert Account.objects.get(pk=wallet.pk).balance == 40


def test_adjust_is_one_wallet_at_a_time(staff_client, customer):
    one, two = WalletFactory(customer=customer), WalletFactory(customer=customer, currency="eur")
    response = staff_client.post(
        reverse("admin:wallets_wallet_changelist"),
        {"action": "adjust_balance", ACTION_CHECKBOX_NAME: [str(one.pk), str(two.pk)]},
        follow=True,
    )
    assert b"select exactly one" in response.content


def test_void_hold_action(staff_client, customer):
    wallet = WalletFactory(customer=customer, balance=100)
    hold = hold_create(account=wallet, amount=70)
    menu = staff_client.post(
        reverse("admin:wallets_hold_changelist"), {"action": "void_hold", ACTION_CHECKBOX_NAME: [str(hold.pk)]}
    )
    assert menu.status_code == 302 and menu["Location"] == operator_url(Hold, "void_hold", [hold])
    page = staff_client.get(menu["Location"])
    assert b"Release $0.70 back to the account" in page.content
    assert Hold.objects.get(pk=hold.pk).status == "pending"

    no_reason = staff_client.post(menu["Location"], {"token": str(uuid.uuid4()), "reason": ""})
    assert no_reason.status_code == 200 and Hold.objects.get(pk=hold.pk).status == "pending"

    staff_client.post(menu["Location"], {"token": str(uuid.uuid4()), "reason": "order abandoned"})
    assert Hold.objects.get(pk=hold.pk).status == "voided"
    assert Account.objects.get(pk=wallet.pk).held == 0
    (entry,) = audit_of(hold)
    assert (entry["operator_action"], entry["reason"]) == ("void_hold", "order abandoned")


def test_a_hold_owned_by_a_workflow_is_skipped(staff_client, customer):
    wallet = WalletFactory(customer=customer, balance=100)
    hold = hold_create(account=wallet, amount=70, owner="charge:123")
    page = staff_client.get(operator_url(Hold, "void_hold", [hold]))
    assert b"Skipped: it belongs to charge:123" in page.content and b"nothing to do" in page.content
    staff_client.post(operator_url(Hold, "void_hold", [hold]), {"token": str(uuid.uuid4()), "reason": "x"})
    assert Hold.objects.get(pk=hold.pk).status == "pending"


def test_run_ledger_audit_button_opens_a_confirmation_and_records_a_run(staff_client, customer):
    WalletFactory(customer=customer, balance=100)
    listing = staff_client.get(reverse("admin:wallets_ledgeraudit_changelist")).content.decode()
    url = operator_url(LedgerAudit, "run_ledger_audit")
    assert f'href="{url}"' in listing
    page = staff_client.get(url)
    assert page.status_code == 200 and b"Run the audit now" in page.content
    assert not LedgerAudit.objects.exists()

    response = staff_client.post(url, {"token": page.context["form"]["token"].value(), "reason": ""})

    audit = LedgerAudit.objects.get()
    assert audit.ok and audit.trigger == "admin"
    assert response.status_code == 302
    assert response["Location"] == reverse("admin:wallets_ledgeraudit_change", args=[audit.pk])
    (entry,) = audit_of(audit)
    assert entry["user"] == staff_client.user and entry["flag"] == ADDITION and entry["details"]["ok"] is True


@pytest.mark.corrupts_ledger
def test_a_failing_audit_is_shown_to_staff(staff_client, customer):
    wallet = WalletFactory(customer=customer, balance=100)
    with connection.cursor() as cursor:
        cursor.execute(
            "UPDATE wallets_account SET balance = balance + 1 WHERE id = %s",
            [wallet.pk.hex if connection.vendor == "sqlite" else wallet.pk],
        )
    staff_client.post(operator_url(LedgerAudit, "run_ledger_audit"), {"token": str(uuid.uuid4())})
    assert not LedgerAudit.objects.get().ok
    page = staff_client.get(reverse("admin:wallets_ledgeraudit_changelist"))
    assert b"FAILED" in page.content
    assert b"FAILED" in staff_client.get(reverse("admin:wallets_account_changelist")).content


def _try_every_action(client, wallet, hold) -> list[int]:
    """Post each money-moving or audit action's confirmation, as its page does; the statuses."""
    token = {"token": str(uuid.uuid4())}
    adjust = {**token, "amount": "-40", "reason": "x"}
    return [
        client.post(operator_url(Wallet, "adjust_balance", [wallet]), adjust).status_code,
        client.post(operator_url(Hold, "void_hold", [hold]), {**token, "reason": "x"}).status_code,
        *(
            client.post(operator_url(model, "run_ledger_audit"), token).status_code
            for model in (Account, Wallet, LedgerAudit)
        ),
    ]


def test_view_only_staff_can_look_but_not_move_money_void_or_audit(django_user_model, customer):
    viewer = _staff_with(django_user_model, "viewer", VIEW_PERMS)
    wallet = WalletFactory(customer=customer, balance=100)
    hold = hold_create(account=wallet, amount=30)
    transfers = Transfer.objects.count()

    page = viewer.get(reverse("admin:wallets_wallet_changelist"))
    assert page.status_code == 200
    assert not {"adjust_balance", "run_ledger_audit"} & set(action_names(page))
    assert "void_hold" not in action_names(viewer.get(reverse("admin:wallets_hold_changelist")))
    audits_page = viewer.get(reverse("admin:wallets_ledgeraudit_changelist"))
    assert audits_page.status_code == 200 and b"Run ledger audit now" not in audits_page.content
    assert viewer.get(operator_url(Wallet, "adjust_balance", [wallet])).status_code == 403

    assert _try_every_action(viewer, wallet, hold) == [403] * 5

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
    assert {"adjust_balance", "run_ledger_audit"} <= set(action_names(page))
    assert b"Run ledger audit now" in operator.get(reverse("admin:wallets_ledgeraudit_changelist")).content

    assert _try_every_action(operator, wallet, hold) == [302] * 5

    assert Account.objects.get(pk=wallet.pk).balance == 60
    assert Transfer.objects.get(kind="adjustment").created_by == operator.user
    assert Hold.objects.get(pk=hold.pk).status == "voided"
    # The three audit runs share the made-up token: one page, one run.
    assert LedgerAudit.objects.count() == 1


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


def test_finance_may_move_money_and_support_may_not(operators, customer):
    """The groups `manage.py seed` makes."""
    wallet = Wallet.objects.get(pk=WalletFactory(customer=customer, balance=100).pk)
    hold = hold_create(account=wallet, amount=30)

    assert _try_every_action(operators.support.client, wallet, hold) == [403] * 5
    assert Account.objects.get(pk=wallet.pk).balance == 100 and not LedgerAudit.objects.exists()

    assert _try_every_action(operators.finance.client, wallet, hold) == [302] * 5
    assert Account.objects.get(pk=wallet.pk).balance == 60 and LedgerAudit.objects.count() == 1
    assert [e["user"] for e in audit_of(wallet)] == [operators.finance.user]
