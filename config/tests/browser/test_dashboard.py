"""The operator dashboard in a real browser, logged in through the admin's login form:
its KPIs are the seeded figures (backoffice/tests/seeding.py, worked out by hand in
backoffice/tests/test_selectors.py), and its charts render as SVG with bars."""

import pytest
from django.utils import timezone

from backoffice.tests.seeding import seed

pytestmark = [pytest.mark.browser, pytest.mark.postgres, pytest.mark.django_db(transaction=True)]


def card_values(staff, section: str) -> dict[str, str]:
    """Label -> shown value of the KPI cards in one dashboard section."""
    cards = staff.find_all(f'section[aria-labelledby="pd-{section}"] .pd-card')
    values = {}
    for card in cards:
        label = card.find_element("css selector", ".pd-label").text.strip().lower()
        values[label] = card.find_element("css selector", ".pd-value").text.strip()
    return values


def test_the_dashboard_shows_the_seeded_figures_and_its_charts(browser, staff_users):
    seed(timezone.now())
    staff = browser("admin")
    staff.login("ops-admin")
    staff.get("/admin/?period=7d&currency=usd")
    staff.screenshot("dashboard")

    money_in = card_values(staff, "money-in")
    assert money_in["gross volume"] == "$165.99"
    assert money_in["refunds"] == "$75.00"
    assert money_in["net volume"] == "$90.99"
    assert money_in["success rate"] == "37.5%"
    assert card_values(staff, "money-held")["customer wallets"] == "$80.00"
    assert card_values(staff, "installments")["expected, next 30 days"] == "$42.00"

    charts = staff.find_all("#dashboard svg")
    assert charts, "no chart on the dashboard"
    bars = staff.find_all("#dashboard svg rect, #dashboard svg path")
    assert len(bars) > 3
    assert all(chart.size["width"] > 100 for chart in charts)  # drawn, not collapsed
