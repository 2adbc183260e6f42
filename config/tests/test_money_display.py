"""money(): the one people-facing money formatter (admin, checkout pages, messages)."""

import pytest

from config.money_display import major_units, money


@pytest.mark.parametrize(
    "amount,currency,shown",
    [
        (2599, "usd", "$25.99"),
        (2599, "USD", "$25.99"),
        (2599, "jpy", "¥2599"),  # zero-decimal (Stripe's list): 2599 yen, not ¥25.99
        (2599, "krw", "₩2599"),
        (2599, "eur", "€25.99"),
        (5, "usd", "$0.05"),
        (0, "gbp", "£0.00"),
        (-150, "eur", "-€1.50"),
        (1500, "kwd", "KWD\u00a01.500"),  # three-decimal
        (2599, "chf", "CHF\u00a025.99"),  # no unambiguous symbol: the code
        (2599, "cad", "CA$25.99"),  # "$" is USD only
        (123456, "usd", "$1234.56"),  # four digits stay together
        (1234567, "usd", "$12,345.67"),
        (123456789, "jpy", "¥123,456,789"),
        (1200, "credits", "1200 credits"),
    ],
)
def test_money_formats_minor_units_in_the_currency(amount, currency, shown):
    assert money(amount, currency) == shown


def test_missing_amount_is_empty():
    assert money(None, "usd") == ""


@pytest.mark.parametrize(
    "amount,currency,decimal",
    [
        (2599, "usd", "25.99"),
        (2599, "jpy", "2599"),
        (-5, "kwd", "-0.005"),
        (7, "eur", "0.07"),
        (10**12, "usd", "10000000000.00"),
    ],
)
def test_major_units_is_an_exact_decimal_string(amount, currency, decimal):
    assert major_units(amount, currency) == decimal
