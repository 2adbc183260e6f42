import pytest

from config.currencies import exponent

pytestmark = [pytest.mark.django_db, pytest.mark.urls("config.tests.urls")]


@pytest.mark.parametrize(
    "amount",
    [10.5, 10.0, "1000", "10.50", -1, 0, True, None, 10**12 + 1, [100], {"v": 1}],
    ids=[
        "float",
        "float-whole",
        "str-int",
        "str-decimal",
        "negative",
        "zero",
        "bool",
        "null",
        "too-big",
        "list",
        "object",
    ],
)
def test_bad_amounts_are_400_naming_amount(api, amount):
    response = api.post("/api/v1/_test/money", {"amount": amount, "currency": "usd"}, format="json")
    assert response.status_code == 400
    assert response.json()["error"]["param"] == "amount"
    assert response.json()["error"]["type"] == "invalid_request_error"


@pytest.mark.parametrize("currency", ["usdx", "us", "xyz", "XTS", 840, "", None, "u$d", "xau"])
def test_bad_currencies_are_400_naming_currency(api, currency):
    response = api.post("/api/v1/_test/money", {"amount": 100, "currency": currency}, format="json")
    assert response.status_code == 400
    assert response.json()["error"]["param"] == "currency"


def test_good_money_is_accepted_and_currency_lowercased(api):
    response = api.post("/api/v1/_test/money", {"amount": 10**12, "currency": "JPY"}, format="json")
    assert response.status_code == 200
    assert response.json() == {"amount": 10**12, "currency": "jpy"}


def test_exponents_follow_stripe():
    assert exponent("usd") == 2
    assert exponent("JPY") == 0 and exponent("krw") == 0 and exponent("ugx") == 0
    assert exponent("kwd") == 3
