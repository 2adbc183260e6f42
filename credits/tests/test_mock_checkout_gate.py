"""The credits mock checkout is the mock provider's too: off in production unless
MOCK_PROVIDER_ENABLED, or anyone holding its link could take the credits for free."""

import pytest

from credits.checkout import credits_checkout_create
from credits.models import Checkout
from credits.selectors import credits_balance
from credits.tests.factories import CreditPackFactory
from webhooks.models import InboundEvent

pytestmark = pytest.mark.django_db

BODY = {"pack": "starter-100", "success_url": "https://app.example/ok", "cancel_url": "https://app.example/no"}


@pytest.fixture
def pack(customer):
    return CreditPackFactory(merchant=customer.merchant, code="starter-100", credits=100)


def test_without_stripe_and_with_the_mock_off_checkout_is_refused(customer, pack, jwt_client, settings):
    settings.STRIPE_SECRET_KEY, settings.MOCK_PROVIDER_ENABLED = "", False
    response = jwt_client(customer).post("/api/v1/credits/checkout", BODY, format="json")
    assert response.status_code == 503, response.content
    assert "STRIPE_SECRET_KEY" in response.json()["error"]["message"]
    assert not Checkout.objects.exists()


def test_a_mock_checkout_page_is_404_once_the_mock_is_off(customer, pack, client, settings, stripe_secret):
    settings.STRIPE_SECRET_KEY = ""
    checkout = credits_checkout_create(
        customer=customer, pack=pack, success_url="https://a.example/ok", cancel_url="https://a.example/no"
    )
    assert client.get(checkout.url).status_code == 200  # while it is enabled
    settings.MOCK_PROVIDER_ENABLED = False
    assert client.get(checkout.url).status_code == 404
    assert client.post(checkout.url, {"action": "pay"}).status_code == 404
    assert credits_balance(customer=customer) == 0 and not InboundEvent.objects.exists()


def test_an_unknown_mock_checkout_is_a_404_in_the_api_error_shape(client):
    response = client.get("/api/v1/credits/checkout/mock/00000000-0000-0000-0000-000000000000")
    assert response.status_code == 404 and response.json()["error"]["type"] == "not_found"
