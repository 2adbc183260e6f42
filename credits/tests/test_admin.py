"""Staff grant and revoke from admin: an intermediate form, a mandatory reason, a service."""

import uuid

import pytest

from config.tests.operator_actions_support import audit_of, operator_url
from credits.models import CreditAccount, Grant, Revocation
from credits.selectors import credit_account_get, credits_balance
from credits.services import credits_debit, credits_grant

pytestmark = pytest.mark.django_db


def test_account_list_shows_balances_read_only(customer, admin_client):
    credits_grant(customer=customer, units=12, source="merchant")
    response = admin_client.get("/admin/credits/creditaccount/")
    assert response.status_code == 200 and b"12" in response.content
    account = credit_account_get(customer=customer)
    change = admin_client.post(f"/admin/credits/creditaccount/{account.pk}/change/", {"balance": 999})
    assert change.status_code in (302, 403)
    assert CreditAccount.objects.get(pk=account.pk).balance == 12


def test_grant_action_asks_for_units_and_a_reason(customer, admin_client, admin_user):
    credits_grant(customer=customer, units=1, source="merchant")
    account = credit_account_get(customer=customer)
    url = "/admin/credits/creditaccount/"
    menu = admin_client.post(url, {"action": "grant_credits", "_selected_action": [account.pk]})
    assert menu.status_code == 302 and menu["Location"] == operator_url(CreditAccount, "grant_credits", [account])
    form = admin_client.get(menu["Location"])
    assert form.status_code == 200 and b"reason" in form.content and b"1 credits" in form.content
    token = form.context["form"]["token"].value()
    refused = admin_client.post(menu["Location"], {"token": token, "units": 5, "reason": " "})
    assert refused.status_code == 200 and credits_balance(customer=customer) == 1
    done = admin_client.post(menu["Location"], {"token": token, "units": 5, "reason": "promo"})
    assert done.status_code == 302
    assert credits_balance(customer=customer) == 6
    grant = Grant.objects.get(source="staff")
    assert (grant.reason, grant.created_by) == ("promo", admin_user)
    (entry,) = audit_of(CreditAccount.objects.get(pk=account.pk))
    assert (entry["reason"], entry["user"], entry["details"]["units"]) == ("promo", admin_user, 5)
    again = admin_client.post(menu["Location"], {"token": token, "units": 5, "reason": "promo"})
    assert again.status_code == 302 and credits_balance(customer=customer) == 6  # a double submit grants once


def test_revoke_action_on_a_grant_stops_at_zero(customer, admin_client):
    grant, _ = credits_grant(customer=customer, units=10, source="merchant")
    credits_debit(customer=customer, units=7)
    done = admin_client.post(
        operator_url(Grant, "revoke_credits", [grant]), {"token": str(uuid.uuid4()), "units": 10, "reason": "fraud"}
    )
    assert done.status_code == 302
    assert credits_balance(customer=customer) == 0
    revocation = Revocation.objects.get()
    assert (revocation.revoked, revocation.shortfall, revocation.reason) == (3, 7, "fraud")
    assert audit_of(grant)[0]["details"]["shortfall"] == 7


def test_support_can_look_at_credits_but_not_grant_or_revoke(customer, operators):
    grant, _ = credits_grant(customer=customer, units=10, source="merchant")
    account = credit_account_get(customer=customer)
    support = operators.support
    assert support.client.get("/admin/credits/creditaccount/").status_code == 200
    assert support.open(CreditAccount, "grant_credits", [account]).status_code == 403
    assert support.forge(CreditAccount, "grant_credits", [account], units=5, reason="x").status_code == 403
    assert support.forge(Grant, "revoke_credits", [grant], units=5, reason="x").status_code == 403
    assert credits_balance(customer=customer) == 10
    operators.finance.confirm(CreditAccount, "grant_credits", [account], units=5, reason="goodwill")
    assert credits_balance(customer=customer) == 15


@pytest.mark.parametrize("page", ["creditpack", "grant", "debit", "revocation", "creditaccount"])
def test_admin_pages_render(customer, admin_client, page):
    credits_grant(customer=customer, units=3, source="merchant")
    credits_debit(customer=customer, units=1)
    assert admin_client.get(f"/admin/credits/{page}/").status_code == 200


def test_staff_adds_a_pack_in_admin(merchant, admin_client):
    assert admin_client.get("/admin/credits/creditpack/add/").status_code == 200
    response = admin_client.post(
        "/admin/credits/creditpack/add/",
        {
            "merchant": merchant.pk,
            "code": "mega-1000",
            "name": "Mega",
            "credits": 1000,
            "stripe_price_id": "price_Mega",
            "price_amount": 4000,
            "currency": "usd",
            "active": "on",
        },
    )
    assert response.status_code == 302, response.content[:2000]
    assert merchant.credit_packs.get().credits == 1000
