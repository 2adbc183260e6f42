"""The mock checkout page, clicked through like a browser (Django test client)."""

import re
from urllib.parse import urlsplit

import pytest
from django.test import Client

from payments.models import Payment
from webhooks.models import InboundEvent

pytestmark = pytest.mark.django_db


def create(merchant_api, **over):
    body = {"order_id": "o-1", "amount": 2599, "currency": "eur", **over}
    return merchant_api.post("/api/v1/payments", body, format="json").json()


@pytest.fixture
def click(django_capture_on_commit_callbacks):
    """POST a button. Outside a test's transaction the notification is processed as soon
    as it is stored; inside one, its on_commit callbacks must be run explicitly."""

    def post(browser, path, data):
        with django_capture_on_commit_callbacks(execute=True):
            return browser.post(path, data)

    return post


def test_pay_button_sends_a_signed_notification_that_succeeds_the_payment(merchant_api, click):
    payment = create(merchant_api)
    browser = Client(enforce_csrf_checks=True)
    page = browser.get(urlsplit(payment["payment_url"]).path)
    html = page.content.decode()
    assert page.status_code == 200 and 'value="pay"' in html and 'value="decline"' in html
    assert "€25.99" in html and "minor units" not in html  # the payer reads money, not 2599 EUR
    assert Payment.objects.get(pk=payment["id"]).status == "pending"  # looking at the page changes nothing
    token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', html).group(1)
    done = click(browser, urlsplit(payment["payment_url"]).path, {"action": "pay", "csrfmiddlewaretoken": token})
    assert done.status_code == 200 and "You chose: paid" in done.content.decode()
    assert Payment.objects.get(pk=payment["id"]).status == "succeeded"
    event = InboundEvent.objects.get()
    assert event.provider == "mock" and event.signature_verified and "X-Paydesk-Signature" in event.headers
    tracking = merchant_api.get(f"/api/v1/payments/{payment['id']}/tracking").json()
    assert tracking["events"][-1]["source"] == "provider_webhook"


def test_decline_fails_the_payment_and_a_second_click_changes_nothing(merchant_api, click):
    payment = create(merchant_api)
    path = urlsplit(payment["payment_url"]).path
    browser = Client()
    click(browser, path, {"action": "decline"})
    assert Payment.objects.get(pk=payment["id"]).status == "failed"
    # The merchant (and staff) read why: the mock's notification carries the reason.
    shown = merchant_api.get(f"/api/v1/payments/{payment['id']}").json()
    assert shown["status"] == "failed" and shown["failure_reason"] == "Declined by the payer on the mock checkout page."
    again = click(browser, path, {"action": "pay"})
    assert again.status_code == 400 and Payment.objects.get(pk=payment["id"]).status == "failed"


def test_return_url_redirect_comes_after_the_webhook_and_changes_nothing_itself(merchant_api, click):
    payment = create(merchant_api, return_url="https://shop.example/thanks")
    response = click(Client(), urlsplit(payment["payment_url"]).path, {"action": "pay"})
    assert response.status_code == 302 and response["Location"] == "https://shop.example/thanks"
    assert Payment.objects.get(pk=payment["id"]).status == "succeeded"


def test_unknown_checkout_is_404():
    assert Client().get("/pay/mock/00000000-0000-0000-0000-000000000000").status_code == 404


def test_a_canceled_payment_can_no_longer_be_paid_on_its_page(merchant_api, click):
    payment = create(merchant_api)
    assert merchant_api.post(f"/api/v1/payments/{payment['id']}/cancel").status_code == 200
    response = click(Client(), urlsplit(payment["payment_url"]).path, {"action": "pay"})
    assert response.status_code == 400 and "already canceled" in response.content.decode()
    assert Payment.objects.get(pk=payment["id"]).status == "canceled"
    assert not InboundEvent.objects.exists()  # the provider sent nothing: nothing to flag
