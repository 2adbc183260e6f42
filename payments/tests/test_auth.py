import hashlib
from urllib.parse import urlencode

import jwt
import pytest
from django.utils import timezone
from rest_framework.test import APIClient

from payments.identity.models import ApiKey, Merchant
from payments.identity.services import api_key_create, api_key_revoke
from payments.tests.factories import CustomerFactory, MerchantFactory

pytestmark = pytest.mark.django_db


def bearer(token):
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {token}")
    return client


def test_api_key_is_stored_only_as_its_hash(merchant):
    api_key, raw = api_key_create(merchant=merchant)
    assert raw.startswith("pd_test_") and len(raw) >= 40
    stored = ApiKey.objects.get(pk=api_key.pk)
    assert stored.key_hash == hashlib.sha256(raw.encode()).hexdigest()
    assert raw not in {stored.key_hash, stored.prefix, stored.name}
    assert raw.startswith(stored.prefix)
    _, live = api_key_create(merchant=merchant, livemode=True)
    assert live.startswith("pd_live_")


def test_valid_key_authenticates_and_records_use(merchant):
    api_key, raw = api_key_create(merchant=merchant)
    assert bearer(raw).get("/api/v1/customers").status_code == 200
    api_key.refresh_from_db()
    assert api_key.last_used_at is not None


def test_revoked_key_is_401(merchant):
    api_key, raw = api_key_create(merchant=merchant)
    api_key_revoke(api_key=api_key)
    response = bearer(raw).get("/api/v1/customers")
    assert response.status_code == 401
    assert response.json()["error"]["type"] == "authentication_error"


@pytest.mark.parametrize("token", ["pd_test_nope", "pd_live_" + "x" * 32, "garbage"])
def test_unknown_key_is_401(merchant, token):
    assert bearer(token).get("/api/v1/customers").status_code == 401


def test_suspended_merchant_key_is_401(merchant):
    _, raw = api_key_create(merchant=merchant)
    merchant.status = "suspended"
    merchant.save()
    assert bearer(raw).get("/api/v1/customers").status_code == 401


def test_merchant_sees_only_its_own_customers(merchant_api, merchant):
    mine = CustomerFactory(merchant=merchant)
    theirs = CustomerFactory(merchant=MerchantFactory())
    assert merchant_api.get(f"/api/v1/customers/{mine.pk}").status_code == 200
    response = merchant_api.get(f"/api/v1/customers/{theirs.pk}")
    assert response.status_code == 404
    assert response.json()["error"]["type"] == "not_found"
    listed = merchant_api.get("/api/v1/customers").json()
    assert [c["id"] for c in listed["results"]] == [str(mine.pk)]


class TestJWT:
    """JWTs identify end users (customers); they work on end-user endpoints only, and
    here we check the authentication itself: a valid token passes authentication but is
    refused by a merchant-only endpoint with 403, every bad token is 401."""

    def test_valid_token_authenticates_but_is_not_a_merchant(self, customer, make_jwt):
        response = bearer(make_jwt(customer.pk)).get("/api/v1/customers")
        assert response.status_code == 403
        assert response.json()["error"]["type"] == "permission_error"

    def test_expired_token_is_401(self, customer, make_jwt):
        response = bearer(make_jwt(customer.pk, exp_in=-10)).get("/api/v1/customers")
        assert response.status_code == 401
        assert "expired" in response.json()["error"]["message"]

    def test_forged_token_is_401(self, customer, make_jwt):
        assert bearer(make_jwt(customer.pk, secret="not-the-secret")).get("/api/v1/customers").status_code == 401

    def test_alg_none_is_401(self, customer):
        token = jwt.encode({"sub": str(customer.pk), "exp": 9999999999}, None, algorithm="none")
        assert bearer(token).get("/api/v1/customers").status_code == 401

    def test_missing_exp_is_401(self, customer, make_jwt):
        assert bearer(make_jwt(customer.pk, exp_in=None)).get("/api/v1/customers").status_code == 401

    def test_customer_of_a_suspended_merchant_is_401_like_its_api_keys(self, customer, make_jwt):
        token = make_jwt(customer.pk)
        assert bearer(token).get("/api/v1/me/hello").status_code == 200
        Merchant.objects.filter(pk=customer.merchant_id).update(status=Merchant.Status.SUSPENDED)
        response = bearer(token).get("/api/v1/me/hello")
        assert response.status_code == 401
        assert response.json()["error"]["type"] == "authentication_error"
        assert "suspended" in response.json()["error"]["message"]

    def test_unknown_subject_is_401(self, db, make_jwt):
        assert bearer(make_jwt("00000000-0000-0000-0000-000000000000")).get("/api/v1/customers").status_code == 401
        assert bearer(make_jwt("not-a-uuid")).get("/api/v1/customers").status_code == 401


def test_staff_session_reads_everything_and_writes_for_a_named_merchant(merchant, django_user_model):
    staff = django_user_model.objects.create_user("ops", password="pw", is_staff=True)
    client = APIClient()
    client.force_login(staff)
    CustomerFactory(merchant=merchant)
    CustomerFactory(merchant=MerchantFactory())
    assert client.get("/api/v1/customers").json()["count"] == 2
    refused = client.post("/api/v1/customers", {"external_id": "x"}, format="json")
    assert refused.status_code == 400 and refused.json()["error"]["param"] == "merchant"
    ok = client.post("/api/v1/customers", {"external_id": "x"}, format="json", HTTP_X_PAYDESK_MERCHANT=str(merchant.pk))
    assert ok.status_code == 201 and ok.json()["merchant"] == str(merchant.pk)


class TestStaffNamesTheMerchant:
    """Staff name the merchant a write is for by id or by name, in the header or ?merchant=."""

    @pytest.fixture
    def staff_client(self, django_user_model):
        client = APIClient()
        client.force_login(django_user_model.objects.create_user("ops", password="pw", is_staff=True))
        return client

    def create(self, client, ref=None, **headers):
        url = "/api/v1/customers" if ref is None else f"/api/v1/customers?{urlencode({'merchant': ref})}"
        return client.post(url, {"external_id": "x"}, format="json", **headers)

    def test_by_name_in_the_query_or_the_header(self, staff_client):
        acme = MerchantFactory(name="Acme Widgets")
        response = self.create(staff_client, "Acme Widgets")
        assert response.status_code == 201 and response.json()["merchant"] == str(acme.pk)
        other = self.create(staff_client, HTTP_X_PAYDESK_MERCHANT="Acme Widgets")
        assert other.status_code == 409  # the same merchant: that external_id is taken now

    def test_a_name_that_is_not_ascii_in_the_header(self, staff_client):
        cafe = MerchantFactory(name="Café Zoë")
        # As a WSGI server hands over a UTF-8 header: decoded as Latin-1.
        raw = "Café Zoë".encode().decode("latin-1")
        response = self.create(staff_client, HTTP_X_PAYDESK_MERCHANT=raw)
        assert response.status_code == 201 and response.json()["merchant"] == str(cafe.pk)

    def test_case_is_ignored_unless_that_makes_it_ambiguous(self, staff_client):
        upper = MerchantFactory(name="ACME")
        assert self.create(staff_client, "acme").json()["merchant"] == str(upper.pk)
        lower = MerchantFactory(name="acme")
        assert self.create(staff_client, "acme").json()["merchant"] == str(lower.pk)  # the exact name wins
        ambiguous = self.create(staff_client, "Acme")
        assert ambiguous.status_code == 400
        error = ambiguous.json()["error"]
        assert error["param"] == "merchant" and "'ACME'" in error["message"] and "'acme'" in error["message"]

    def test_an_unknown_merchant_is_404_naming_the_parameter(self, staff_client, merchant):
        for ref in ("Nobody", "00000000-0000-0000-0000-000000000000"):
            response = self.create(staff_client, ref)
            assert response.status_code == 404 and response.json()["error"]["param"] == "merchant"

    def test_reads_are_scoped_to_the_named_merchant(self, staff_client):
        acme, other = MerchantFactory(name="Acme"), MerchantFactory(name="Other")
        CustomerFactory(merchant=acme)
        CustomerFactory(merchant=other)
        listed = staff_client.get("/api/v1/customers?merchant=acme").json()
        assert [c["merchant"] for c in listed["results"]] == [str(acme.pk)]


def test_non_staff_session_is_401(django_user_model):
    user = django_user_model.objects.create_user("someone", password="pw")
    client = APIClient()
    client.force_login(user)
    assert client.get("/api/v1/customers").status_code == 401


class TestThrottling:
    def test_repeated_auth_failures_are_throttled_but_a_good_key_still_gets_in(
        self, settings, merchant_key, customer, make_jwt
    ):
        settings.AUTH_FAILURE_THROTTLE_RATE = "3/min"
        bad = bearer("pd_test_wrongwrongwrong")
        assert [bad.get("/api/v1/customers").status_code for _ in range(3)] == [401, 401, 401]
        response = bad.get("/api/v1/customers")
        assert response.status_code == 429
        assert response.json()["error"]["type"] == "rate_limit_error"
        assert int(response["Retry-After"]) > 0
        # Same address, right credentials: not a failure, not refused (a shared NAT, one
        # stale key among good ones must not lock a merchant's integration out).
        assert bearer(merchant_key).get("/api/v1/customers").status_code == 200
        assert bearer(make_jwt(customer.pk)).get("/api/v1/me/credits").status_code == 200
        assert bad.get("/api/v1/customers").status_code == 429
        assert bearer("not-a-jwt").get("/api/v1/me/credits").status_code == 429  # JWT failures count alike

    def test_a_forged_x_forwarded_for_does_not_dodge_the_auth_failure_throttle(self, settings):
        settings.AUTH_FAILURE_THROTTLE_RATE = "3/min"
        bad = bearer("pd_test_wrongwrongwrong")
        codes = [bad.get("/api/v1/customers", HTTP_X_FORWARDED_FOR=f"10.0.0.{i}").status_code for i in range(5)]
        assert codes == [401, 401, 401, 429, 429]

    def test_api_rate_per_caller(self, settings, merchant_api, client_for):
        settings.API_THROTTLE_RATE = "5/min"
        codes = [merchant_api.get("/api/v1/customers").status_code for _ in range(6)]
        assert codes == [200] * 5 + [429]
        assert merchant_api.get("/api/v1/customers")["Retry-After"]
        # Another merchant has its own budget.
        assert client_for(MerchantFactory()).get("/api/v1/customers").status_code == 200


def test_last_used_is_written_at_most_once_a_minute(merchant):
    from payments.identity.services import api_key_touch

    api_key, _ = api_key_create(merchant=merchant)
    now = timezone.now()
    api_key_touch(api_key=api_key, now=now)
    api_key_touch(api_key=api_key, now=now + timezone.timedelta(seconds=30))
    api_key.refresh_from_db()
    assert api_key.last_used_at == now
