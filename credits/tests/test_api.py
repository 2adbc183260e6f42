"""The credits endpoints (API.md "Credits"): JWT end users, merchant keys, staff."""

import uuid

import pytest

from credits.models import Checkout, Grant
from credits.selectors import credits_balance
from credits.services import credits_debit, credits_grant
from credits.tests.factories import CreditPackFactory
from payments.tests.factories import CustomerFactory, MerchantFactory

pytestmark = pytest.mark.django_db


def fund(customer, units):
    credits_grant(customer=customer, units=units, source="merchant")


def test_me_hello_returns_the_customer(customer, jwt_client):
    response = jwt_client(customer).get("/api/v1/me/hello")
    assert response.status_code == 200
    assert response.json() == {
        "data": {
            "user": {
                "id": str(customer.pk),
                "email": customer.email,
                "name": customer.name,
                "external_id": customer.external_id,
            }
        }
    }


def test_me_credits_is_the_balance(customer, jwt_client):
    fund(customer, 42)
    assert jwt_client(customer).get("/api/v1/me/credits").json() == {"data": {"balance": 42}}


@pytest.mark.parametrize(
    "kwargs", [{"exp_in": -10}, {"secret": "forged-secret-of-at-least-32-bytes!!"}, {"exp_in": None}]
)
def test_expired_forged_or_exp_less_jwt_is_401(customer, jwt_client, kwargs):
    fund(customer, 10)
    client = jwt_client(customer, **kwargs)
    for method, url, body in [
        ("get", "/api/v1/me/credits", None),
        ("get", "/api/v1/me/hello", None),
        ("post", "/api/v1/credits/debit", {"delta": 1}),
    ]:
        response = getattr(client, method)(url, body, format="json")
        assert response.status_code == 401, (url, response.content)
        assert response.json()["error"]["type"] == "authentication_error"
    assert credits_balance(customer=customer) == 10


def test_no_credentials_is_401(api):
    assert api.get("/api/v1/me/credits").status_code == 401


@pytest.mark.parametrize("url", ["/api/v1/me/credits", "/api/v1/me/hello"])
def test_a_merchant_key_reads_me_for_a_customer_it_names(merchant_api, customer, url):
    fund(customer, 7)
    missing = merchant_api.get(url)
    assert missing.status_code == 400 and missing.json()["error"]["param"] == "customer"
    assert merchant_api.get(f"{url}?customer={customer.pk}").status_code == 200
    if url.endswith("credits"):
        assert merchant_api.get(f"{url}?customer={customer.pk}").json() == {"data": {"balance": 7}}
    stranger = CustomerFactory(merchant=MerchantFactory())
    assert merchant_api.get(f"{url}?customer={stranger.pk}").status_code == 404


def test_an_end_user_cannot_read_me_as_another_customer(customer, jwt_client, merchant):
    other = CustomerFactory(merchant=merchant)
    fund(other, 9)
    response = jwt_client(customer).get(f"/api/v1/me/credits?customer={other.pk}")
    assert response.status_code == 404


def test_staff_see_me_endpoints_in_the_browsable_api(client, admin_user, customer):
    """API.md: the browsable API works on every endpoint for a logged-in staff user."""
    fund(customer, 11)
    client.force_login(admin_user)
    page = client.get(f"/api/v1/me/credits?customer={customer.pk}", HTTP_ACCEPT="text/html")
    assert page.status_code == 200 and "Paydesk API" in page.content.decode()
    assert client.get(f"/api/v1/me/credits?customer={customer.pk}").json() == {"data": {"balance": 11}}


def test_debit_returns_the_new_balance(customer, jwt_client):
    fund(customer, 70)
    response = jwt_client(customer).post("/api/v1/credits/debit", {"delta": 5, "reason": "search"}, format="json")
    assert response.status_code == 200, response.content
    assert response.json() == {"data": {"balance": 65}}


def test_use_credits_is_the_same_operation(customer, jwt_client):
    fund(customer, 10)
    response = jwt_client(customer).post("/api/v1/use-credits", {"units": 3, "ref": "job-9"}, format="json")
    assert response.json() == {"data": {"balance": 7}}
    assert customer.credit_debits.get().ref == "job-9"


@pytest.mark.parametrize(("url", "field"), [("/api/v1/credits/debit", "delta"), ("/api/v1/use-credits", "units")])
def test_insufficient_credits_is_402_with_nothing_changed(customer, jwt_client, url, field):
    fund(customer, 4)
    response = jwt_client(customer).post(url, {field: 5}, format="json")
    assert response.status_code == 402
    error = response.json()["error"]
    assert (error["type"], error["code"]) == ("payment_error", "insufficient_credits")
    assert credits_balance(customer=customer) == 4
    assert not customer.credit_debits.exists()


@pytest.mark.parametrize("delta", [0, -5, 1.5, "5", None])
def test_debit_refuses_bad_amounts(customer, jwt_client, delta):
    fund(customer, 10)
    response = jwt_client(customer).post("/api/v1/credits/debit", {"delta": delta}, format="json")
    assert response.status_code == 400
    assert response.json()["error"]["param"] == "delta"
    assert credits_balance(customer=customer) == 10


def test_idempotency_key_replays_a_debit(customer, jwt_client):
    fund(customer, 10)
    client = jwt_client(customer)
    first = client.post("/api/v1/use-credits", {"units": 4}, format="json", HTTP_IDEMPOTENCY_KEY="k1")
    second = client.post("/api/v1/use-credits", {"units": 4}, format="json", HTTP_IDEMPOTENCY_KEY="k1")
    assert first.json() == second.json() == {"data": {"balance": 6}}
    assert second.headers["Idempotent-Replayed"] == "true"
    assert credits_balance(customer=customer) == 6


def test_merchant_key_debits_its_customer(customer, merchant_api):
    fund(customer, 10)
    response = merchant_api.post("/api/v1/use-credits", {"units": 2, "customer": str(customer.pk)}, format="json")
    assert response.json() == {"data": {"balance": 8}}


def test_merchant_key_must_name_the_customer(merchant_api):
    response = merchant_api.post("/api/v1/use-credits", {"units": 2}, format="json")
    assert response.status_code == 400 and response.json()["error"]["param"] == "customer"


def test_merchant_cannot_touch_another_merchants_customer(customer, client_for):
    fund(customer, 10)
    other = client_for(MerchantFactory())
    assert (
        other.post("/api/v1/use-credits", {"units": 2, "customer": str(customer.pk)}, format="json").status_code == 404
    )
    assert other.get(f"/api/v1/credits/ledger?customer={customer.pk}").status_code == 404
    grant = other.post(
        "/api/v1/credits/grants", {"customer": str(customer.pk), "units": 5, "reason": "x"}, format="json"
    )
    assert grant.status_code == 404
    assert credits_balance(customer=customer) == 10


def test_a_customer_cannot_read_or_spend_anothers_credits(customer, jwt_client):
    victim = CustomerFactory(merchant=customer.merchant)
    fund(victim, 50)
    fund(customer, 1)
    client = jwt_client(customer)
    spend = client.post("/api/v1/use-credits", {"units": 5, "customer": str(victim.pk)}, format="json")
    assert spend.status_code == 404
    ledger = client.get(f"/api/v1/credits/ledger?customer={victim.pk}")
    assert ledger.status_code == 404
    assert client.get("/api/v1/me/credits").json() == {"data": {"balance": 1}}
    assert credits_balance(customer=victim) == 50


def test_merchant_grants_credits(customer, merchant_api):
    response = merchant_api.post(
        "/api/v1/credits/grants",
        {"customer": str(customer.pk), "units": 25, "reason": "support goodwill"},
        format="json",
        HTTP_IDEMPOTENCY_KEY="g1",
    )
    assert response.status_code == 201, response.content
    body = response.json()["data"]
    assert body["balance"] == 25 and body["grant"]["units"] == 25 and body["grant"]["source"] == "merchant"
    again = merchant_api.post(
        "/api/v1/credits/grants",
        {"customer": str(customer.pk), "units": 25, "reason": "support goodwill"},
        format="json",
        HTTP_IDEMPOTENCY_KEY="g1",
    )
    assert again.status_code == 201 and credits_balance(customer=customer) == 25


def test_grant_needs_a_reason(customer, merchant_api):
    response = merchant_api.post("/api/v1/credits/grants", {"customer": str(customer.pk), "units": 5}, format="json")
    assert response.status_code == 400 and response.json()["error"]["param"] == "reason"


def test_end_user_cannot_grant_themselves_credits(customer, jwt_client):
    response = jwt_client(customer).post(
        "/api/v1/credits/grants", {"customer": str(customer.pk), "units": 5, "reason": "me"}, format="json"
    )
    assert response.status_code == 403
    assert credits_balance(customer=customer) == 0


def test_staff_grants_credits(customer, admin_client, admin_user):
    response = admin_client.post(
        "/api/v1/credits/grants",
        {"customer": str(customer.pk), "units": 9, "reason": "ops"},
        content_type="application/json",
    )
    assert response.status_code == 201, response.content
    grant = Grant.objects.get()
    assert (grant.source, grant.created_by) == ("staff", admin_user)


def test_ledger_lists_grants_and_debits_newest_first(customer, jwt_client, merchant_api):
    fund(customer, 10)
    credits_debit(customer=customer, units=3, reason="call")
    body = jwt_client(customer).get("/api/v1/credits/ledger").json()
    assert body["count"] == 2
    assert [(r["type"], r["units"], r["balance_after"]) for r in body["results"]] == [
        ("debit", -3, 7),
        ("grant", 10, 10),
    ]
    assert body["results"][0]["reason"] == "call"
    by_merchant = merchant_api.get(f"/api/v1/credits/ledger?customer={customer.pk}").json()
    assert by_merchant["results"] == body["results"]


def test_checkout_with_the_mock_provider_buys_the_pack(
    customer, jwt_client, settings, stripe_secret, client, django_capture_on_commit_callbacks
):
    settings.STRIPE_SECRET_KEY = ""
    CreditPackFactory(merchant=customer.merchant, code="starter-100", credits=100)
    response = jwt_client(customer).post(
        "/api/v1/credits/checkout",
        {"pack": "starter-100", "success_url": "https://app.example/ok", "cancel_url": "https://app.example/no"},
        format="json",
    )
    assert response.status_code == 200, response.content
    url = response.json()["url"]
    assert "/api/v1/credits/checkout/mock/" in url
    page = client.get(url)
    assert page.status_code == 200 and b"100 credits" in page.content
    assert credits_balance(customer=customer) == 0  # showing the page grants nothing
    with django_capture_on_commit_callbacks(execute=True):
        paid = client.post(url, {"action": "pay"})
    assert paid.status_code == 302 and paid["Location"] == "https://app.example/ok"
    assert credits_balance(customer=customer) == 100
    with django_capture_on_commit_callbacks(execute=True):
        client.post(url, {"action": "pay"})  # a second click is the same Stripe event
    assert credits_balance(customer=customer) == 100
    assert Checkout.objects.get().status == "complete"


def test_checkout_unknown_pack_is_404(customer, jwt_client):
    response = jwt_client(customer).post(
        "/api/v1/credits/checkout",
        {"pack": "nope", "success_url": "https://a.example/ok", "cancel_url": "https://a.example/no"},
        format="json",
    )
    assert response.status_code == 404 and response.json()["error"]["param"] == "pack"


def test_checkout_through_stripe_sends_the_metadata(customer, jwt_client, settings):
    from payments.tests.fake_http import FakeHTTP

    session = {"id": "cs_test_credits_1", "object": "checkout.session", "url": "https://checkout.stripe.com/c/pay/cs_1"}
    server = FakeHTTP({("POST", "/v1/checkout/sessions"): (200, session)})
    try:
        settings.STRIPE_SECRET_KEY = "sk_test_" + "z" * 24
        settings.STRIPE_API_BASE = server.url
        pack = CreditPackFactory(merchant=customer.merchant, code="pro-500", credits=500, stripe_price_id="price_Pro")
        response = jwt_client(customer).post(
            "/api/v1/credits/checkout",
            {"pack": "pro-500", "success_url": "https://a.example/ok", "cancel_url": "https://a.example/no"},
            format="json",
        )
    finally:
        server.close()
    assert response.status_code == 200, response.content
    assert response.json()["url"] == "https://checkout.stripe.com/c/pay/cs_1"
    sent = server.requests[0]
    body = sent["body"]
    assert body["client_reference_id"] == [str(customer.pk)]
    assert body["metadata[paydesk_customer]"] == [str(customer.pk)]
    assert body["metadata[credits]"] == ["500"]
    assert body["line_items[0][price]"] == ["price_Pro"]
    checkout = Checkout.objects.get()
    assert sent["headers"]["Idempotency-Key"] == f"credits-checkout-{checkout.pk}"
    assert (checkout.session_id, checkout.pack) == ("cs_test_credits_1", pack)


def test_stripe_failure_is_502(customer, jwt_client, settings):
    from payments.tests.fake_http import FakeHTTP

    server = FakeHTTP({("POST", "/v1/checkout/sessions"): (400, {"error": {"message": "No such price"}})})
    try:
        settings.STRIPE_SECRET_KEY = "sk_test_" + "z" * 24
        settings.STRIPE_API_BASE = server.url
        CreditPackFactory(merchant=customer.merchant, code="p", credits=5)
        response = jwt_client(customer).post(
            "/api/v1/credits/checkout",
            {"pack": "p", "success_url": "https://a.example/ok", "cancel_url": "https://a.example/no"},
            format="json",
        )
    finally:
        server.close()
    assert response.status_code == 502 and response.json()["error"]["type"] == "provider_error"


# --- Customer ids: malformed is a 400, unknown a 404 ------------------------------------------

CUSTOMER_BODIES = [
    ("/api/v1/credits/debit", {"delta": 1}),
    ("/api/v1/use-credits", {"units": 1}),
    ("/api/v1/credits/grants", {"units": 1, "reason": "goodwill"}),
]


@pytest.mark.parametrize("bad", ["notauuid", 123, "zzz"])
@pytest.mark.parametrize(("url", "body"), CUSTOMER_BODIES)
def test_a_malformed_customer_id_is_400_naming_it(customer, merchant_api, url, body, bad):
    fund(customer, 10)
    response = merchant_api.post(url, {**body, "customer": bad}, format="json")
    assert response.status_code == 400, response.content
    error = response.json()["error"]
    assert (error["type"], error["param"]) == ("invalid_request_error", "customer")
    assert credits_balance(customer=customer) == 10


@pytest.mark.parametrize(("url", "body"), CUSTOMER_BODIES)
def test_a_well_formed_unknown_customer_id_stays_404_naming_it(merchant_api, url, body):
    response = merchant_api.post(url, {**body, "customer": "7d4c5a0e-3d7c-4c7e-9a59-3c2f1d0b9a11"}, format="json")
    assert response.status_code == 404
    assert response.json()["error"]["param"] == "customer"


def test_ledger_with_a_malformed_customer_is_400_and_an_unknown_one_404(merchant_api):
    bad = merchant_api.get("/api/v1/credits/ledger?customer=zzz")
    assert bad.status_code == 400
    assert (bad.json()["error"]["type"], bad.json()["error"]["param"]) == ("invalid_request_error", "customer")
    unknown = merchant_api.get("/api/v1/credits/ledger?customer=7d4c5a0e-3d7c-4c7e-9a59-3c2f1d0b9a11")
    assert unknown.status_code == 404 and unknown.json()["error"]["param"] == "customer"


def test_an_end_user_naming_a_malformed_customer_is_400(customer, jwt_client):
    fund(customer, 10)
    response = jwt_client(customer).post("/api/v1/use-credits", {"units": 1, "customer": "notauuid"}, format="json")
    assert response.status_code == 400 and response.json()["error"]["param"] == "customer"
    # Their own id, in any UUID spelling, is still theirs.
    own = jwt_client(customer).post("/api/v1/use-credits", {"units": 1, "customer": customer.pk.hex}, format="json")
    assert own.json() == {"data": {"balance": 9}}


# --- Ledger ids ---------------------------------------------------------------------------------


def test_every_ledger_item_id_is_a_uuid_string_naming_its_transfer(customer, jwt_client):
    g, _ = credits_grant(customer=customer, units=10, source="merchant")
    debit, _ = credits_debit(customer=customer, units=3)
    results = jwt_client(customer).get("/api/v1/credits/ledger").json()["results"]
    assert [r["id"] for r in results] == [str(debit.transfer_id), str(g.transfer_id)]
    for item in results:
        assert isinstance(item["id"], str) and str(uuid.UUID(item["id"])) == item["id"]


def test_the_schema_says_ledger_ids_are_uuids(api):
    spec = api.get("/api/schema/?format=json").json()
    entry = next(v for k, v in spec["components"]["schemas"].items() if k.startswith("LedgerEntry"))
    assert entry["properties"]["id"]["type"] == "string" and entry["properties"]["id"]["format"] == "uuid"
    ledger = spec["paths"]["/api/v1/credits/ledger"]["get"]
    customer = next(p for p in ledger["parameters"] if p["name"] == "customer")
    assert customer["schema"]["format"] == "uuid"
