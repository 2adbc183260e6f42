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


def test_changelists_and_detail_pages_render(staff_client, customer):
    wallet = WalletFactory(customer=customer, balance=1234)
    hold_create(account=wallet, amount=34)
    transfer = Transfer.objects.first()
    for name in ["account", "wallet", "transfer", "entry", "hold", "ledgeraudit"]:
        response = staff_client.get(reverse(f"admin:wallets_{name}_changelist"))
        assert response.status_code == 200, name
    assert staff_client.get(reverse("admin:wallets_transfer_change", args=[transfer.pk])).status_code == 200
    assert b"12.34 USD" in staff_client.get(reverse("admin:wallets_wallet_changelist")).content
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


def test_adjust_balance_action_needs_a_reason_and_records_the_staff_user(staff_client, customer):
    wallet = WalletFactory(customer=customer, balance=100)
    url = reverse("admin:wallets_wallet_changelist")
    base = {"action": "adjust_balance", ACTION_CHECKBOX_NAME: [str(wallet.pk)]}

    page = staff_client.post(url, base)
    assert page.status_code == 200 and b"Adjust wallet balance" in page.content

    no_reason = staff_client.post(url, {**base, "apply": "1", "amount": "50", "reason": ""})
    assert no_reason.status_code == 200  # the form again, with its error
    assert Account.objects.get(pk=wallet.pk).balance == 100

    done = staff_client.post(url, {**base, "apply": "1", "amount": "-40", "reason": "refund of fee"})
    assert done.status_code == 302
    assert Account.objects.get(pk=wallet.pk).balance == 60
    transfer = Transfer.objects.get(kind="adjustment")
    assert (transfer.description, transfer.created_by, transfer.amount) == ("refund of fee", staff_client.user, 40)

    too_much = staff_client.post(url, {**base, "apply": "1", "amount": "-61", "reason": "x"})
    assert too_much.status_code == 302
    assert Account.objects.get(pk=wallet.pk).balance == 60


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
