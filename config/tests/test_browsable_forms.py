"""The browsable API's forms are built from what each endpoint takes (its Input
serializer), not from what it returns, and posting them works: the HTML form as form
data, the raw form as JSON."""

import json
import uuid
from html.parser import HTMLParser

import pytest
from django.urls import URLPattern, URLResolver, get_resolver
from rest_framework import serializers
from rest_framework.test import APIClient

from config.api.parsing import form_as_json
from payments.models import Payment
from payments.tests.factories import MerchantFactory

pytestmark = pytest.mark.django_db


class _Forms(HTMLParser):
    """The browsable API page's forms: {form id: {field name: value as rendered}}."""

    def __init__(self):
        super().__init__()
        self.forms, self._pane, self._form, self._textarea, self._select = {}, None, None, None, None

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "div" and attrs.get("id", "").endswith("-form"):
            self._pane = attrs["id"]
        elif tag == "form" and self._pane:
            self._form = self.forms.setdefault(self._pane, {})
        elif self._form is None:
            return
        elif tag == "input" and attrs.get("name") and attrs.get("type") != "checkbox":
            self._form[attrs["name"]] = attrs.get("value") or ""
        elif tag == "textarea":
            self._textarea = attrs["name"]
            self._form[self._textarea] = ""
        elif tag == "select":
            self._select = attrs["name"]
            self._form.setdefault(self._select, "")
        elif tag == "option" and self._select and "selected" in attrs:
            self._form[self._select] = attrs.get("value", "")

    def handle_data(self, data):
        if self._textarea:
            self._form[self._textarea] += data

    def handle_endtag(self, tag):
        if tag == "textarea":
            self._textarea = None
        elif tag == "select":
            self._select = None
        elif tag == "form":
            self._form, self._pane = None, None


def forms_on(client, url) -> dict:
    page = client.get(url, HTTP_ACCEPT="text/html")
    assert page["Content-Type"].startswith("text/html")
    parser = _Forms()
    parser.feed(page.content.decode())
    return parser.forms


@pytest.fixture
def staff():
    from django.contrib.auth import get_user_model

    client = APIClient()
    client.force_login(get_user_model().objects.create_user("ops", password="pw", is_staff=True))
    return client


@pytest.fixture
def shop():
    return MerchantFactory(name="Demo Shop")


PAYMENTS = "/api/v1/payments?merchant=Demo%20Shop"


def test_the_payment_form_asks_for_what_the_endpoint_takes(staff, shop):
    form = forms_on(staff, PAYMENTS)["post-object-form"]
    fields = set(form) - {"csrfmiddlewaretoken"}
    assert fields == {
        "order_id",
        "amount",
        "currency",
        "customer",
        "provider",
        "description",
        "metadata",
        "return_url",
        "split_instructions",
    }


def test_the_payment_html_form_posted_as_the_browser_does_creates_the_payment(staff, shop):
    form = forms_on(staff, PAYMENTS)["post-object-form"]
    form.update({"order_id": "A-1001", "amount": "2599", "currency": "EUR"})
    response = staff.post(PAYMENTS, form)  # multipart/form-data, like the page's form
    assert response.status_code == 201, response.content
    payment = Payment.objects.get(order_id="A-1001")
    assert payment.merchant == shop and payment.amount == 2599 and payment.currency == "eur"
    assert payment.metadata == {} and payment.split_instructions == [] and payment.customer is None


def test_the_raw_form_is_a_json_body_of_the_input_fields(staff, shop):
    raw = forms_on(staff, PAYMENTS)["post-generic-content-form"]
    assert raw["_content_type"] == "application/json"
    template = json.loads(raw["_content"])
    assert "status" not in template and "id" not in template
    template.update({"order_id": "A-1002", "amount": 500, "currency": "usd"})
    response = staff.post(PAYMENTS, template, format="json")
    assert response.status_code == 201, response.content


def test_a_required_list_can_be_sent_from_the_html_form(staff, shop):
    url = "/api/v1/webhook-endpoints?merchant=Demo%20Shop"
    form = forms_on(staff, url)["post-object-form"]
    form.update({"url": "https://example.com/hook", "events": '["payment.succeeded"]'})
    response = staff.post(url, form)
    assert response.status_code == 201, response.content
    assert response.json()["events"] == ["payment.succeeded"]


def test_a_form_value_of_the_wrong_kind_is_a_400_naming_it(staff, shop):
    for field, value in (("amount", "25.99"), ("split_instructions", "[{oops")):
        form = {"order_id": "A-1003", "amount": "2599", "currency": "usd", field: value}
        response = staff.post(PAYMENTS, form)
        assert response.status_code == 400 and response.json()["error"]["param"] == field


def _write_views():
    """(url, view class) of every API view with a body to parse, ids filled in. Not the
    signed inbound webhooks (no authentication, a signature over the raw body): no
    browser form could sign a post."""

    def walk(patterns, prefix=""):
        for pattern in patterns:
            if isinstance(pattern, URLResolver):
                yield from walk(pattern.url_patterns, prefix + str(pattern.pattern))
            elif isinstance(pattern, URLPattern) and hasattr(pattern.callback, "view_class"):
                yield prefix + str(pattern.pattern), pattern.callback.view_class

    fake = str(uuid.uuid4())
    for route, view in walk(get_resolver().url_patterns):
        signed = getattr(view, "authentication_classes", None) == []
        if route.startswith("api/v1/") and hasattr(view, "Input") and hasattr(view, "post") and not signed:
            url = "/" + route
            while "<" in url:
                start = url.index("<")
                url = url[:start] + fake + url[url.index(">", start) + 1 :]
            yield url, view


def test_every_html_form_has_exactly_its_endpoints_input_fields(staff, shop):
    checked = 0
    for url, view in _write_views():
        wanted = {name for name, field in view.Input().fields.items() if not field.read_only}
        forms = forms_on(staff, f"{url}?merchant=Demo%20Shop")
        shown = set(forms.get("post-object-form", {})) - {"csrfmiddlewaretoken"}
        assert shown == wanted, url
        checked += 1
    assert checked >= 15


class TestFormAsJson:
    class Input(serializers.Serializer):
        from config.api.fields import MetadataField, MinorUnitsField

        amount = MinorUnitsField()
        note = serializers.CharField(required=False, allow_blank=True)
        refund = MinorUnitsField(required=False)
        metadata = MetadataField(required=False, default=dict)
        tags = serializers.ListField(child=serializers.CharField(), required=False)

    def parse(self, query: str) -> dict:
        from django.http import QueryDict

        return form_as_json(self.Input(), QueryDict(query))

    def test_blank_optional_fields_are_omitted_and_numbers_are_integers(self):
        assert self.parse("amount=100&note=&refund=&metadata=&csrfmiddlewaretoken=x") == {"amount": 100}

    def test_json_fields_are_parsed_and_repeated_inputs_are_a_list(self):
        body = self.parse('amount=1&metadata={"a":"b"}&tags=x&tags=y')
        assert body == {"amount": 1, "metadata": {"a": "b"}, "tags": ["x", "y"]}
        assert self.parse('amount=1&tags=["x"]')["tags"] == ["x"]

    def test_text_that_is_not_an_integer_stays_text_for_the_field_to_refuse(self):
        assert self.parse("amount=1e3")["amount"] == "1e3"
