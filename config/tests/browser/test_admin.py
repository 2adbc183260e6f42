"""The admin in a real browser, logged in through its login form: money formatted with
totals per currency, a refund through the Action menu and the object page's button, a
support user who cannot move money, and a CSV export of a filtered list."""

import csv

import pytest
import requests

from config.tests.operator_actions_support import operator_url
from payments.charges import charge_create
from payments.models import Payment, Refund
from payments.services import payment_create
from wallets.models import Transfer
from wallets.selectors import ledger_audit
from wallets.services import wallet_create, wallet_credit

pytestmark = [pytest.mark.browser, pytest.mark.postgres, pytest.mark.django_db(transaction=True)]
PAYMENTS = "/admin/payments/payment/"


@pytest.fixture
def seeded(merchant, customer):
    """A $25.99 payment the customer's wallet paid (refundable), a pending $10.00 one
    and a pending ¥2599 one."""
    wallet = wallet_create(customer=customer, currency="usd")
    wallet_credit(wallet=wallet, amount=5000)
    charge = charge_create(merchant=merchant, customer=customer, amount=2599, currency="usd", order_id="o-wallet")
    assert charge.status == "succeeded", charge.status
    return {
        "wallet": wallet,
        "paid": Payment.objects.get(pk=charge.payment_id),
        "usd": payment_create(merchant=merchant, order_id="o-usd-pending", amount=1000, currency="usd"),
        "jpy": payment_create(merchant=merchant, order_id="o-jpy", amount=2599, currency="jpy"),
    }


def row_of(browser, payment):
    """The changelist row of a payment: the row that links to its page."""
    link = browser.find(f'#result_list a[href$="/{payment.pk}/change/"]')
    return link.find_element("xpath", "./ancestor::tr")


def test_the_payments_list_shows_formatted_money_and_totals_per_currency(browser, staff_users, seeded):
    staff = browser("admin")
    staff.login("ops-admin")
    staff.get(PAYMENTS)
    staff.screenshot("payments")

    assert "$25.99" in row_of(staff, seeded["paid"]).text
    assert "$10.00" in row_of(staff, seeded["usd"]).text
    jpy = row_of(staff, seeded["jpy"]).text
    assert "¥2599" in jpy and "¥25.99" not in jpy
    # Raw minor units on hover.
    money = row_of(staff, seeded["paid"]).find_element("css selector", ".pd-money")
    assert money.get_attribute("title") == "2599 usd (minor units)"

    usd_total = staff.text("#money-totals tr.pd-total-usd")
    jpy_total = staff.text("#money-totals tr.pd-total-jpy")
    assert usd_total.split()[:2] == ["USD", "2"] and "$35.99" in usd_total
    assert jpy_total.split()[:2] == ["JPY", "1"] and "¥2599" in jpy_total


def test_a_refund_through_the_action_menu_and_the_button_moves_the_payment_and_the_ledger(browser, staff_users, seeded):
    from selenium.webdriver.support.select import Select  # here: without selenium the fixture skips

    paid, wallet = seeded["paid"], seeded["wallet"]
    wallet.refresh_from_db()
    balance_before = wallet.balance
    finance = browser("finance")
    finance.login("ops-finance")

    # Partial refund: tick the row, pick the action, Go, fill the confirmation page.
    finance.get(PAYMENTS)
    row_of(finance, paid).find_element("css selector", 'input[name="_selected_action"]').click()
    Select(finance.find('select[name="action"]')).select_by_value("refund_payment")
    finance.screenshot("action-menu")
    finance.find('button[name="index"]').click()
    finance.wait_for(lambda: "/operator/" in finance.driver.current_url, what="the confirmation page")
    assert "Refund up to" in finance.text("#content-main")
    finance.find("#id_amount").send_keys("1000")
    finance.find("#id_reason").send_keys("damaged in transit")
    assert "= 10.00 USD" in finance.text(".amount-preview")  # the typed minor units, as money
    finance.screenshot("refund-confirm")
    finance.find('input[type="submit"][value="Yes, refund"]').click()
    finance.wait_for(lambda: "/change/" in finance.driver.current_url, what="the payment's page")
    finance.screenshot("refunded-partly")
    assert "Refunded" in finance.text(".messagelist")

    paid.refresh_from_db()
    assert (paid.status, paid.amount_refunded) == ("partially_refunded", 1000)
    first = Refund.objects.get(payment=paid)
    assert (first.amount, first.reason) == (1000, "damaged in transit")
    assert Transfer.objects.filter(reference=f"refund:{first.pk}").count() == 1

    # The rest, from the object page's button, the amount left blank.
    finance.find(f'a[href="{operator_url(Payment, "refund_payment", [paid])}"]').click()
    finance.wait_for(lambda: "/operator/" in finance.driver.current_url, what="the confirmation page")
    finance.find("#id_reason").send_keys("customer gave up")
    finance.screenshot("refund-rest-confirm")
    finance.find('input[type="submit"][value="Yes, refund"]').click()
    finance.wait_for(lambda: "/change/" in finance.driver.current_url, what="the payment's page")
    finance.screenshot("refunded")

    paid.refresh_from_db()
    assert (paid.status, paid.amount_refunded) == ("refunded", 2599)
    refunds = list(Refund.objects.filter(payment=paid).order_by("created_at"))
    assert [r.amount for r in refunds] == [1000, 1599]
    for refund in refunds:
        assert Transfer.objects.filter(reference=f"refund:{refund.pk}").count() == 1
    wallet.refresh_from_db()
    assert wallet.balance == balance_before + 2599  # back in the wallet that paid
    report = ledger_audit()
    assert report["ok"], report


def test_a_support_user_sees_no_refund_and_a_forged_post_is_refused(browser, live_server, staff_users, seeded):
    paid = seeded["paid"]
    transfers = Transfer.objects.count()
    support = browser("support")
    support.login("ops-support")

    support.get(PAYMENTS)
    support.screenshot("payments")
    assert "$25.99" in row_of(support, paid).text  # support sees the money
    menus = support.find_all('select[name="action"]')
    actions = [o.get_attribute("value") for m in menus for o in m.find_elements("css selector", "option")]
    assert not {"refund_payment", "cancel_payment", "reconcile_payment"} & set(actions)

    support.get(f"/admin/payments/payment/{paid.pk}/change/")
    support.screenshot("payment")
    assert "Refund…" not in support.text("#content")
    assert not support.find_all(f'a[href="{operator_url(Payment, "refund_payment", [paid])}"]')

    support.get(operator_url(Payment, "refund_payment", [paid]))
    support.screenshot("refund-page-refused")
    assert "payments.refund_payment" in support.text()

    # A forged confirmation with the support user's own session and CSRF token.
    cookies = support.session_cookies()
    forged = requests.post(
        live_server.url + operator_url(Payment, "refund_payment", [paid]),
        data={"token": "00000000-0000-4000-8000-000000000000", "amount": "100", "reason": "x"},
        cookies=cookies,
        headers={"X-CSRFToken": cookies["csrftoken"], "Referer": live_server.url + PAYMENTS},
        allow_redirects=False,
        timeout=30,
    )
    assert forged.status_code == 403 and "payments.refund_payment" in forged.text  # refused for the permission

    paid.refresh_from_db()
    assert (paid.status, paid.amount_refunded) == ("succeeded", 0)
    assert not Refund.objects.exists() and Transfer.objects.count() == transfers


def test_a_csv_export_of_a_filtered_list_downloads_exactly_those_rows(browser, staff_users, seeded):
    staff = browser("admin")
    staff.login("ops-admin")
    staff.get(PAYMENTS + "?currency__exact=usd")
    staff.screenshot("payments-usd")
    shown = {box.get_attribute("value") for box in staff.find_all('input[name="_selected_action"]')}
    assert shown == {str(seeded["paid"].pk), str(seeded["usd"].pk)}

    export = staff.find("a.pd-export")
    assert export.get_attribute("href").endswith("/export/?currency__exact=usd")
    export.click()
    path = staff.download()

    assert path.name.startswith("payments-") and path.suffix == ".csv"
    with path.open(newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    assert {r["id"] for r in rows} == shown and len(rows) == 2
    paid = next(r for r in rows if r["order_id"] == "o-wallet")
    assert (paid["amount"], paid["amount_decimal"], paid["currency"]) == ("2599", "25.99", "usd")
