"""NextAuth session tokens as NextAuth issues them (API.md "NextAuth session tokens"):
tokens minted by the real next-auth / @auth/core packages (fixtures) and by our minter with
the same parameters, on the end-user endpoints; every bad token is a 401."""

import base64
import json

import jwt as pyjwt
import pytest
from django.test import Client
from joserfc import jwe
from joserfc.jwk import OctKey
from rest_framework.test import APIClient

from credits.selectors import credits_balance
from credits.services import credits_grant
from payments.identity.models import Customer, Merchant
from payments.identity.nextauth import V4_INFO, derive_key
from payments.tests.factories import CustomerFactory, MerchantFactory
from payments.tests.nextauth_tokens import REAL_TOKENS, mint_v4, mint_v5

SECRET = REAL_TOKENS["secret"]
REAL = REAL_TOKENS["tokens"]
USER = {"sub": "nextauth-user-42", "name": "Ada Lovelace", "email": "ada@example.com", "picture": None}


def bearer(token) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {token}")
    return client


@pytest.fixture
def nextauth(settings, merchant):
    settings.NEXTAUTH_SECRET = SECRET
    settings.NEXTAUTH_MERCHANT = ""
    return merchant


TOKENS = {
    "v4 by next-auth": lambda: REAL["v4"],
    "v5 by @auth/core": lambda: REAL["v5"],
    "v5 by @auth/core, __Secure- cookie": lambda: REAL["v5_secure"],
    "v4 minted here": lambda: mint_v4(USER, secret=SECRET),
    "v5 minted here": lambda: mint_v5(USER, secret=SECRET),
    "v5 minted here, __Secure- cookie": lambda: mint_v5(USER, secret=SECRET, salt="__Secure-authjs.session-token"),
    "v5 minted here, A256GCM (Auth.js decode takes it)": lambda: mint_v5(USER, secret=SECRET, enc="A256GCM"),
}


@pytest.mark.django_db
class TestAccepted:
    @pytest.mark.parametrize("kind", TOKENS)
    def test_on_every_end_user_endpoint(self, nextauth, kind):
        client = bearer(TOKENS[kind]())
        hello = client.get("/api/v1/me/hello")
        assert hello.status_code == 200, hello.json()
        customer = Customer.objects.get(merchant=nextauth, external_id="nextauth-user-42")
        assert hello.json()["data"]["user"]["id"] == str(customer.pk)
        credits_grant(customer=customer, units=10, source="merchant")
        assert client.get("/api/v1/me/credits").json() == {"data": {"balance": 10}}
        debit = client.post("/api/v1/credits/debit", {"delta": 3}, format="json")
        assert debit.status_code == 200 and debit.json() == {"data": {"balance": 7}}
        used = client.post("/api/v1/use-credits", {"units": 2}, format="json")
        assert used.status_code == 200 and used.json() == {"data": {"balance": 5}}
        assert credits_balance(customer=customer) == 5
        assert Customer.objects.filter(external_id="nextauth-user-42").count() == 1

    def test_first_use_creates_the_customer_with_the_tokens_email_and_name(self, nextauth):
        assert not Customer.objects.exists()
        assert bearer(REAL["v4"]).get("/api/v1/me/hello").status_code == 200
        customer = Customer.objects.get()
        assert (customer.merchant, customer.external_id) == (nextauth, "nextauth-user-42")
        assert (customer.email, customer.name) == ("ada@example.com", "Ada Lovelace")
        # v5 of the same user is the same customer; later tokens change nothing stored.
        renamed = mint_v5({**USER, "name": "Countess", "email": "other@example.com"}, secret=SECRET)
        assert bearer(renamed).get("/api/v1/me/hello").status_code == 200
        assert Customer.objects.get() == customer
        customer.refresh_from_db()
        assert customer.name == "Ada Lovelace"

    def test_an_existing_customer_is_found_by_external_id(self, nextauth):
        existing = CustomerFactory(merchant=nextauth, external_id="nextauth-user-42")
        response = bearer(REAL["v5"]).get("/api/v1/me/hello")
        assert response.json()["data"]["user"]["id"] == str(existing.pk)

    def test_a_bad_email_claim_is_not_stored(self, nextauth):
        token = mint_v4({"sub": "u-1", "email": "not an email", "name": 42}, secret=SECRET)
        assert bearer(token).get("/api/v1/me/hello").status_code == 200
        assert Customer.objects.values_list("email", "name").get() == ("", "")

    def test_nextauth_merchant_by_name_or_id_when_there_are_several(self, nextauth, settings):
        other = MerchantFactory()
        settings.NEXTAUTH_MERCHANT = other.name
        assert bearer(REAL["v4"]).get("/api/v1/me/hello").status_code == 200
        settings.NEXTAUTH_MERCHANT = str(nextauth.pk)
        assert bearer(REAL["v4"]).get("/api/v1/me/hello").status_code == 200
        assert sorted(Customer.objects.values_list("merchant__name", flat=True)) == sorted([other.name, nextauth.name])

    def test_hs256_jwts_still_work_beside_them(self, nextauth, customer, make_jwt):
        assert bearer(make_jwt(customer.pk)).get("/api/v1/me/hello").status_code == 200

    def test_not_a_merchant(self, nextauth):
        assert bearer(REAL["v4"]).get("/api/v1/customers").status_code == 403


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _flip(token: str, part: int) -> str:
    """Change one character of one of the five parts (0 header ... 4 tag)."""
    parts = token.split(".")
    raw = bytearray(base64.urlsafe_b64decode(parts[part] + "=" * (-len(parts[part]) % 4)))
    raw[len(raw) // 2] ^= 0x01
    parts[part] = _b64(bytes(raw))
    return ".".join(parts)


def _with_header(token: str, header: dict) -> str:
    return ".".join([_b64(json.dumps(header).encode()), *token.split(".")[1:]])


def _v4_key() -> OctKey:
    return OctKey.import_key(derive_key(SECRET, salt="", info=V4_INFO, length=32))


BAD = {
    # expired
    "expired, by next-auth": lambda: REAL["v4_expired"],
    "expired, by @auth/core": lambda: REAL["v5_expired"],
    "expired, minted here (beyond the 15 s tolerance)": lambda: mint_v4(USER, secret=SECRET, max_age=-20),
    "no exp": lambda: mint_v4(USER, secret=SECRET, max_age=None),
    "no sub": lambda: mint_v4({"email": "a@example.com"}, secret=SECRET),
    # tampered
    "tampered ciphertext": lambda: _flip(REAL["v4"], 3),
    "tampered tag": lambda: _flip(REAL["v5"], 4),
    "tampered iv": lambda: _flip(REAL["v4"], 2),
    "tampered header (kid)": lambda: _with_header(REAL["v5"], {"alg": "dir", "enc": "A256CBC-HS512", "kid": "x"}),
    "truncated": lambda: REAL["v4"][:-10],
    # wrong secret
    "another secret, by next-auth": lambda: REAL["v4_other_secret"],
    "another secret, v5 minted here": lambda: mint_v5(USER, secret=SECRET + "x"),
    # wrong salt
    "another cookie name as salt, by @auth/core": lambda: REAL["v5_other_salt"],
    "v4 key with a salt": lambda: mint_v5(USER, secret=SECRET, salt="next-auth.session-token", enc="A256GCM"),
    # algorithms
    "alg none (JWS), sub = external_id": lambda: pyjwt.encode({**USER, "exp": 4102444800}, None, algorithm="none"),
    "alg none in a JWE header": lambda: _with_header(REAL["v4"], {"alg": "none", "enc": "A256GCM"}),
    "HS256 with NEXTAUTH_SECRET, sub = external_id": lambda: pyjwt.encode(
        {**USER, "exp": 4102444800}, SECRET, algorithm="HS256"
    ),
    "dir with A128GCM": lambda: jwe.encrypt_compact(
        {"alg": "dir", "enc": "A128GCM"},
        json.dumps({**USER, "exp": 4102444800}),
        OctKey.import_key(derive_key(SECRET, salt="", info=V4_INFO, length=16)),
        algorithms=["dir", "A128GCM"],
    ),
    "A256KW instead of dir": lambda: jwe.encrypt_compact(
        {"alg": "A256KW", "enc": "A256GCM"}, json.dumps({**USER, "exp": 4102444800}), _v4_key()
    ),
    "not a token": lambda: "a.b.c.d.e",
}


@pytest.mark.django_db
class TestRefused:
    @pytest.mark.parametrize("kind", BAD)
    @pytest.mark.parametrize(
        "method, path, body",
        [
            ("get", "/api/v1/me/hello", None),
            ("get", "/api/v1/me/credits", None),
            ("post", "/api/v1/credits/debit", {"delta": 1}),
            ("post", "/api/v1/use-credits", {"units": 1}),
        ],
    )
    def test_is_401_and_creates_nothing(self, nextauth, kind, method, path, body):
        client = bearer(BAD[kind]())
        response = getattr(client, method)(path, body, format="json") if body else client.get(path)
        assert response.status_code == 401, (kind, response.json())
        assert response.json()["error"]["type"] == "authentication_error"
        assert not Customer.objects.exists()

    def test_expired_says_so(self, nextauth):
        assert "expired" in bearer(REAL["v4_expired"]).get("/api/v1/me/hello").json()["error"]["message"]

    def test_without_nextauth_secret_they_are_refused(self, nextauth, settings):
        settings.NEXTAUTH_SECRET = ""
        response = bearer(REAL["v4"]).get("/api/v1/me/hello")
        assert response.status_code == 401 and "NEXTAUTH_SECRET" in response.json()["error"]["message"]

    def test_a_suspended_merchant(self, nextauth):
        Merchant.objects.filter(pk=nextauth.pk).update(status=Merchant.Status.SUSPENDED)
        response = bearer(REAL["v4"]).get("/api/v1/me/hello")
        assert response.status_code == 401 and "suspended" in response.json()["error"]["message"]

    @pytest.mark.parametrize("configured", ["", "No Such Shop", "00000000-0000-0000-0000-000000000000"])
    def test_no_single_merchant_to_map_to(self, nextauth, settings, configured, caplog):
        MerchantFactory()
        settings.NEXTAUTH_MERCHANT = configured
        response = bearer(REAL["v4"]).get("/api/v1/me/hello")
        assert response.status_code == 401 and "NEXTAUTH_MERCHANT" in response.json()["error"]["message"]
        assert "NEXTAUTH_MERCHANT" in caplog.text  # the operator's to fix: logged as an error
        assert not Customer.objects.exists()

    def test_failures_count_against_the_auth_failure_throttle(self, nextauth, settings):
        settings.AUTH_FAILURE_THROTTLE_RATE = "2/min"
        codes = [bearer(REAL["v4_other_secret"]).get("/api/v1/me/hello").status_code for _ in range(3)]
        assert codes == [401, 401, 429]
        assert bearer(REAL["v4"]).get("/api/v1/me/hello").status_code == 200


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_20_concurrent_first_requests_make_one_customer(settings, merchant):
    from credits.tests.conftest import run_concurrently

    settings.NEXTAUTH_SECRET = SECRET
    tokens = [REAL["v4"] if i % 2 else REAL["v5"] for i in range(20)]  # both formats, one user

    def work(i):
        response = Client().get("/api/v1/me/hello", HTTP_AUTHORIZATION=f"Bearer {tokens[i]}", secure=True)
        return f"{response.status_code} {response.json()['data']['user']['id']}"

    outcomes = run_concurrently(20, work)
    customer = Customer.objects.get(merchant=merchant, external_id="nextauth-user-42")
    assert outcomes == {f"200 {customer.pk}": 20}, outcomes
    assert Customer.objects.count() == 1
