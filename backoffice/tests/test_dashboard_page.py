"""The dashboard as staff see it on the admin index: figures formatted, a fixed handful of
queries, every KPI and chart linking to an admin list that shows what it counted."""

import re
from datetime import timedelta
from html import unescape
from urllib.parse import parse_qs, urlsplit

import pytest
from django.contrib.auth.models import Permission
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from backoffice.tests.seeding import seed
from payments.tests.factories import MerchantFactory

pytestmark = pytest.mark.django_db
INDEX = "/admin/"
MAX_QUERIES = 25


@pytest.fixture
def data(monkeypatch):
    """The seed at its offsets from noon today, with the clock stopped there: at 00:30
    an hour ago is yesterday, and the figures each test works out by hand would move."""
    noon = timezone.localtime().replace(hour=12, minute=0, second=0, microsecond=0)
    monkeypatch.setattr(timezone, "now", lambda: noon)
    return seed(noon)


def page(client, **params):
    response = client.get(INDEX, params)
    assert response.status_code == 200
    return response


def cards(response, section: str) -> dict:
    """The section's KPI cards by label (the tag's context, as the template got it)."""
    value = response.context[section]
    return {card.label: card for card in (value["cards"] if isinstance(value, dict) else value)}


def listed(client, href: str) -> int:
    """How many rows the admin list behind `href` shows (and that it accepted the filters)."""
    assert href, "no link"
    response = client.get(href)
    assert response.status_code == 200, (href, response.status_code, response.get("Location"))
    return response.context["cl"].result_count


def dashboard_hrefs(response) -> list[str]:
    html = response.content.decode()
    dashboard = html[html.index('id="dashboard"') : html.index('id="sections"')]
    return sorted({unescape(h) for h in re.findall(r'href="([^"]+)"', dashboard) if h.startswith("/admin/")})


class TestThePage:
    def test_figures_in_major_units_with_the_app_list_below(self, admin_client, data):
        response = page(admin_client, period="7d", currency="usd")
        html = response.content.decode()
        money_in = cards(response, "money_in")
        assert money_in["Gross volume"].value == "$165.99"
        assert money_in["Refunds"].value == "$75.00"
        assert money_in["Net volume"].value == "$90.99"
        assert money_in["Success rate"].value == "37.5%"
        assert cards(response, "money_held")["Customer wallets"].value == "$80.00"
        assert cards(response, "installments")["Expected, next 30 days"].value == "$42.00"
        assert "<svg" in html and "Volume collected and refunded" in html
        assert 'id="content-main"' in html and 'href="/admin/payments/payment/"' in html  # the usual app list
        assert "Recent actions" in html

    def test_a_zero_decimal_currency_has_no_decimals(self, admin_client, data):
        response = page(admin_client, period="7d", currency="jpy")
        assert cards(response, "money_in")["Gross volume"].value == "¥3599"
        assert cards(response, "money_in")["Net volume"].value == "¥2599"

    def test_currency_selector_lists_the_currencies_and_marks_the_chosen_one(self, admin_client, data):
        html = page(admin_client, period="7d", currency="eur").content.decode()
        assert '<option value="eur" selected>EUR</option>' in html
        assert '<option value="usd">USD</option>' in html and '<option value="jpy">JPY</option>' in html

    def test_one_merchant(self, admin_client, data):
        response = page(admin_client, period="7d", currency="usd", merchant=str(data.beta.pk))
        assert cards(response, "money_in")["Gross volume"].value == "$40.00"
        assert f'<option value="{data.beta.pk}" selected>Beta</option>' in response.content.decode()
        gross = cards(response, "money_in")["Gross volume"].href
        assert parse_qs(urlsplit(gross).query)["merchant__id__exact"] == [str(data.beta.pk)]
        assert listed(admin_client, gross) == 1

    @pytest.mark.parametrize(
        "params, period, currency",
        [
            ({"period": "bogus", "currency": "zz"}, "30d", "usd"),
            ({"period": "90d", "merchant": "not-a-uuid"}, "90d", "usd"),
        ],
    )
    def test_nonsense_in_the_query_string_falls_back_to_the_defaults(
        self, admin_client, data, params, period, currency
    ):
        response = page(admin_client, **params)
        assert response.context["selection"] == {"period": period, "currency": currency, "merchant": ""}

    def test_an_empty_database(self, admin_client):
        response = page(admin_client)
        assert cards(response, "money_in")["Gross volume"].value == "$0.00"
        assert cards(response, "money_in")["Success rate"].value == "—"


class TestQueries:
    def test_a_handful_of_queries_that_does_not_grow_with_the_data(self, admin_client, data):
        admin_client.get(INDEX)  # the session and permission caches, as on any later visit
        with CaptureQueriesContext(connection) as first:
            page(admin_client, period="30d", currency="usd", merchant=str(data.acme.pk))
        # Counted now: CaptureQueriesContext reads the connection's log, which the next request empties.
        count = len(first)
        assert count <= MAX_QUERIES, [q["sql"] for q in first.captured_queries]
        more = MerchantFactory(name="Gamma")
        seed_again = seed(timezone.now() - timedelta(days=3), suffix=" again")  # as much again, two more merchants
        with CaptureQueriesContext(connection) as second:
            page(admin_client, period="30d", currency="usd", merchant=str(more.pk))
        assert len(second) <= count  # the same queries (one fewer with no declines to rank)
        with CaptureQueriesContext(connection) as third:
            page(admin_client, period="30d", currency="usd", merchant=str(seed_again.acme.pk))
        assert len(third) == count


class TestLinks:
    def test_each_kpi_links_to_the_list_of_what_it_counted(self, admin_client, data):
        response = page(admin_client, period="7d", currency="usd")
        money_in, held = cards(response, "money_in"), cards(response, "money_held")
        installments, health = cards(response, "installments"), cards(response, "health")
        expected = [
            (money_in["Gross volume"], 3),
            (money_in["Refunds"], 2),
            (money_in["Payments"], 10),
            (response.context["money_in"]["failed"], 4),
            (response.context["money_in"]["declined"], 2),
            (held["Customer wallets"], 3),
            (held["Held"], 1),
            (installments["Due today"], 2),  # orders
            (installments["Overdue"], 2),
            (installments["Failing (dunning)"], 1),
            (installments["Defaulted"], 1),
            (installments["Expected, next 30 days"], 2),
            (health["Deliveries retrying"], 2),
            (health["Deliveries failed"], 1),
            (health["Endpoints disabled"], 1),
            (health["Inbound events failed"], 2),
            (health["Inbound events flagged"], 1),
            (health["Stuck pending"], 1),
        ]
        assert [(card.label, listed(admin_client, card.href)) for card, _ in expected] == [
            (card.label, n) for card, n in expected
        ]

    def test_top_reasons_link_to_their_payments(self, admin_client, data):
        response = page(admin_client, period="7d", currency="usd")
        reasons = {r["reason"]: r for r in response.context["money_in"]["failed_reasons"]}
        assert listed(admin_client, reasons["card_declined"]["href"]) == 2
        assert listed(admin_client, reasons["(no reason given)"]["href"]) == 1
        declined = {r["reason"]: r for r in response.context["money_in"]["declined_reasons"]}
        assert listed(admin_client, declined["card_declined"]["href"]) == 1

    def test_chart_bars_link_to_their_day_and_status(self, admin_client, data):
        response = page(admin_client, period="7d", currency="usd")
        html = response.content.decode()
        by_status = {row["label"]: row for row in response.context["money_in"]["by_status"]}
        for row in by_status.values():
            assert listed(admin_client, row["href"]) == row["n"]
            assert f'href="{row["href"]}"'.replace("&", "&amp;") in html  # its bar in the status chart
        yesterday = timezone.localtime(timezone.now() - timedelta(days=1)).date().isoformat()
        day_links = [h for h in dashboard_hrefs(response) if f"created_at__gte={yesterday}" in h]
        collected = [h for h in day_links if "/payments/payment/" in h and "status__in" in h]
        refunded = [h for h in day_links if "/payments/refund/" in h]
        assert [listed(admin_client, h) for h in collected] == [1]  # Beta's 40.00
        assert [listed(admin_client, h) for h in refunded] == [1]  # 25.00 of the partly refunded one

    def test_every_link_on_the_dashboard_opens(self, admin_client, data):
        hrefs = dashboard_hrefs(page(admin_client, period="7d", currency="usd", merchant=str(data.acme.pk)))
        assert len(hrefs) > 30
        for href in hrefs:
            response = admin_client.get(href)
            assert response.status_code == 200, (href, response.status_code, response.get("Location"))


class TestWhoSeesIt:
    def staff(self, django_user_model, *codenames):
        user = django_user_model.objects.create_user("ops", password="pw", is_staff=True)
        user.user_permissions.set(Permission.objects.filter(codename__in=codenames))
        return user

    def test_staff_who_may_not_view_payments_get_the_plain_index(self, client, django_user_model, data):
        client.force_login(self.staff(django_user_model, "view_delivery"))
        html = page(client).content.decode()
        assert 'id="dashboard"' not in html and 'id="content-main"' in html

    def test_links_only_to_lists_the_user_may_open(self, client, django_user_model, data):
        client.force_login(self.staff(django_user_model, "view_payment"))
        response = page(client, period="7d", currency="usd")
        assert cards(response, "money_in")["Gross volume"].href.startswith("/admin/payments/payment/?")
        assert cards(response, "money_held")["Customer wallets"].href == ""
        for href in dashboard_hrefs(response):
            assert client.get(href).status_code == 200, href

    def test_anonymous_visitors_are_sent_to_the_login(self, client):
        assert client.get(INDEX).status_code == 302
