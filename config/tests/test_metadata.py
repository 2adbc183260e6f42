"""`metadata` keeps to Stripe's limits everywhere it is accepted (payments, charges,
installment orders): at most 50 keys, keys of 1 to 40 characters without brackets,
string values of at most 500 characters. Past them: a 400 naming the field, and nothing
created."""

import json

import pytest

from config.errors import InvalidRequest
from config.metadata import MAX_KEY_LENGTH, MAX_KEYS, MAX_VALUE_LENGTH, metadata_validate
from installments.models import InstallmentOrder
from payments.models import Charge, Payment
from wallets.services import wallet_create, wallet_credit

pytestmark = pytest.mark.django_db

ENDPOINTS = {
    "payments": "/api/v1/payments",
    "charges": "/api/v1/charges",
    "installments": "/api/v1/installments/orders",
}
MODELS = {"payments": Payment, "charges": Charge, "installments": InstallmentOrder}


@pytest.fixture
def create(merchant_api, customer):
    """create(kind, metadata) -> the response of creating one `kind` with that metadata."""
    wallet_credit(wallet=wallet_create(customer=customer, currency="usd"), amount=100_000)
    bodies = {
        "payments": {"order_id": "meta-1", "amount": 1000, "currency": "usd"},
        "charges": {"customer": str(customer.pk), "amount": 1000, "currency": "usd"},
        "installments": {
            "customer": str(customer.pk),
            "amount": 1000,
            "currency": "usd",
            "installment_count": 2,
            "interval": "month",
        },
    }

    def make(kind, metadata, **headers):
        return merchant_api.post(ENDPOINTS[kind], {**bodies[kind], "metadata": metadata}, format="json", **headers)

    return make


def assert_refused(response, kind, param, says):
    assert response.status_code == 400, response.content
    error = response.json()["error"]
    assert (error["type"], error["param"]) == ("invalid_request_error", param), error
    assert says in error["message"], error["message"]
    assert not MODELS[kind].objects.exists()


@pytest.mark.parametrize("kind", ENDPOINTS)
class TestEveryEndpoint:
    def test_the_largest_allowed_metadata_is_stored(self, create, kind):
        metadata = {f"{i:02d}".ljust(MAX_KEY_LENGTH, "k"): "v" * MAX_VALUE_LENGTH for i in range(MAX_KEYS)}
        response = create(kind, metadata)
        assert response.status_code == 201, response.content
        assert MODELS[kind].objects.get().metadata == metadata

    def test_forty_thousand_keys_in_a_megabyte_are_refused(self, create, kind):
        metadata = {f"key{i}": "value-value" for i in range(40_000)}
        assert len(json.dumps(metadata)) > 800_000
        assert_refused(create(kind, metadata), kind, "metadata", "At most 50 keys, not 40000")

    def test_fifty_one_keys_are_refused(self, create, kind):
        assert_refused(create(kind, {f"k{i}": "v" for i in range(51)}), kind, "metadata", "At most 50 keys")

    def test_a_key_over_40_characters_is_refused(self, create, kind):
        assert_refused(create(kind, {"k" * 41: "v"}), kind, "metadata", "1 to 40 characters")

    def test_a_value_over_500_characters_is_refused_naming_its_key(self, create, kind):
        assert_refused(create(kind, {"note": "v" * 501}), kind, "metadata.note", "at most 500 characters")

    def test_a_nested_value_is_refused_naming_its_key(self, create, kind):
        response = create(kind, {"deep": {"a": "b" * 2000}})
        assert_refused(response, kind, "metadata.deep", "Must be a string, not an object")

    def test_a_key_with_brackets_is_refused(self, create, kind):
        assert_refused(create(kind, {"a[b]": "v"}), kind, "metadata", "square brackets")


def test_the_refusal_saves_no_idempotency_key(create):
    """A 400 from validation: the same key may be retried with the metadata fixed."""
    refused = create("payments", {"k" * 41: "v"}, HTTP_IDEMPOTENCY_KEY="meta-retry")
    assert refused.status_code == 400
    fixed = create("payments", {"k": "v"}, HTTP_IDEMPOTENCY_KEY="meta-retry")
    assert fixed.status_code == 201, fixed.content


@pytest.mark.parametrize(
    "metadata,param",
    [
        ({"n": 3, "ok": True, "s": ""}, None),
        ({"n": 10**501}, "metadata.n"),
        ({"gone": None}, "metadata.gone"),
        ({"": "v"}, "metadata"),
        (["not", "an", "object"], "metadata"),
    ],
)
def test_the_one_validator(metadata, param):
    if param is None:
        assert metadata_validate(metadata) == metadata
        return
    with pytest.raises(InvalidRequest) as refused:
        metadata_validate(metadata)
    assert refused.value.param == param
