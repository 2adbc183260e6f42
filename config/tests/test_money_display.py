"""Money shown to people: major units, the currency's own decimals, its symbol or code."""

import pytest
from django.template import Context, Template

from config.money_display import money


@pytest.mark.parametrize(
    "amount, currency, shown",
    [
        (2599, "usd", "$25.99"),
        (2599, "USD", "$25.99"),
        (2599, "jpy", "¥2,599"),  # zero-decimal: 2599 is ¥2,599, not ¥25.99
        (1000000, "krw", "₩1,000,000"),
        (1234, "bhd", "BHD 1.234"),  # three-decimal
        (123456789, "eur", "€1,234,567.89"),
        (5, "gbp", "£0.05"),
        (0, "usd", "$0.00"),
        (-500, "usd", "-$5.00"),
        (-7, "jpy", "-¥7"),
        (100000, "kes", "KES 1,000.00"),  # no well-known symbol: the code
        (199, "chf", "CHF 1.99"),
    ],
)
def test_money(amount, currency, shown):
    assert money(amount, currency) == shown


def test_nothing_to_show():
    assert money(None, "usd") == ""


def test_the_template_filter():
    rendered = Template("{% load money %}{{ a|money:c }} / {{ b|money:'jpy' }}").render(
        Context({"a": 2599, "c": "usd", "b": 2599})
    )
    assert rendered == "$25.99 / ¥2,599"
