import uuid
from datetime import timedelta

import pytest
from django.utils import timezone

from payments.tests.factories import CustomerFactory, MerchantFactory
from wallets.models import Account, Hold, Transfer
from wallets.services import hold_create, wallet_credit
from wallets.tests.factories import WalletFactory
from webhooks.models import OutboundEvent

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("shards")]

WALLETS = "/api/v1/wallets"


def _error(response, status: int, code: str, param=None):
    assert response.status_code == status, response.content
    error = response.json()["error"]
    assert error["code"] == code
    if param is not None:
        assert error["param"] == param
    return error


def _post(api, path, body=None, **headers):
    return api.post(path, body or {}, format="json", headers=headers or None)


# --- create / read -------------------------------------------------------------------


def test_create_wallet_then_duplicate_is_409(merchant_api, customer):
    response = _post(merchant_api, WALLETS, {"customer": str(customer.pk), "currency": "USD"})
    assert response.status_code == 201, response.content
    body = response.json()
    assert body == {
        "id": body["id"],
        "customer": str(customer.pk),
        "currency": "usd",
        "balance": 0,
        "available": 0,
        "held": 0,
    }
    _error(_post(merchant_api, WALLETS, {"customer": str(customer.pk), "currency": "usd"}), 409, "conflict")
    assert Account.objects.filter(customer=customer).count() == 1


def test_create_for_unknown_customer_is_404_on_param_customer(merchant_api):
    body = {"customer": str(uuid.uuid4()), "currency": "usd"}
    _error(_post(merchant_api, WALLETS, body), 404, "not_found", "customer")


@pytest.mark.parametrize("customer_id", ["not-a-uuid", 123])
def test_create_with_a_malformed_customer_id_is_400_on_param_customer(merchant_api, customer_id):
    # A bad field (as POST /charges says too), not a missing object.
    body = {"customer": customer_id, "currency": "usd"}
    _error(_post(merchant_api, WALLETS, body), 400, "invalid_request_error", "customer")


def test_create_for_another_merchants_customer_is_404(merchant_api):
    stranger = CustomerFactory(merchant=MerchantFactory())
    _error(_post(merchant_api, WALLETS, {"customer": str(stranger.pk), "currency": "usd"}), 404, "not_found")
    assert not Account.objects.filter(customer=stranger).exists()


@pytest.mark.parametrize("currency", ["usdx", "xyz", 12, None])
def test_create_with_bad_currency_is_400(merchant_api, customer, currency):
    response = _post(merchant_api, WALLETS, {"customer": str(customer.pk), "currency": currency})
    _error(response, 400, "invalid_request_error", "currency")


def test_get_wallet_shows_balance_available_held(merchant_api, customer):
    wallet = WalletFactory(customer=customer, balance=1000)
    hold_create(account=wallet, amount=300)
    response = merchant_api.get(f"{WALLETS}/{customer.pk}")
    assert response.status_code == 200
    assert response.json() == {
        "id": str(wallet.pk),
        "customer": str(customer.pk),
        "currency": "usd",
        "balance": 1000,
        "available": 700,
        "held": 300,
    }
    assert merchant_api.get(f"{WALLETS}/{customer.pk}?currency=USD").json()["id"] == str(wallet.pk)


def test_get_wallet_currency_errors(merchant_api, customer):
    _error(merchant_api.get(f"{WALLETS}/{customer.pk}"), 404, "not_found")  # no wallet at all
    WalletFactory(customer=customer, currency="usd")
    WalletFactory(customer=customer, currency="eur")
    _error(merchant_api.get(f"{WALLETS}/{customer.pk}"), 400, "invalid_request_error", "currency")  # which one?
    _error(merchant_api.get(f"{WALLETS}/{customer.pk}?currency=gbp"), 400, "invalid_request_error", "currency")
    _error(merchant_api.get(f"{WALLETS}/{customer.pk}?currency=zzz"), 400, "invalid_request_error", "currency")
    assert merchant_api.get(f"{WALLETS}/{customer.pk}?currency=eur").json()["currency"] == "eur"


def test_get_another_merchants_wallet_is_404(merchant_api):
    stranger = CustomerFactory(merchant=MerchantFactory())
    WalletFactory(customer=stranger, balance=100)
    _error(merchant_api.get(f"{WALLETS}/{stranger.pk}"), 404, "not_found")
    _error(merchant_api.get(f"{WALLETS}/{stranger.pk}/ledger"), 404, "not_found")
    _error(merchant_api.get(f"{WALLETS}/{uuid.uuid4()}"), 404, "not_found")


def test_unauthenticated_is_401(api, customer):
    assert api.get(f"{WALLETS}/{customer.pk}").status_code == 401


def test_ledger_is_newest_first_with_signed_amounts(merchant_api, customer):
    wallet = WalletFactory(customer=customer)
    _post(merchant_api, f"{WALLETS}/{customer.pk}/credit", {"amount": 1000, "currency": "usd", "reference": "top"})
    _post(merchant_api, f"{WALLETS}/{customer.pk}/debit", {"amount": 250, "currency": "usd", "reference": "o-1"})
    response = merchant_api.get(f"{WALLETS}/{customer.pk}/ledger")
    assert response.status_code == 200
    body = response.json()
    assert body["count"] == 2
    rows = [{k: r[k] for k in ("amount", "balance_after", "type", "reference")} for r in body["results"]]
    assert rows == [
        {"amount": -250, "balance_after": 750, "type": "debit", "reference": "o-1"},
        {"amount": 1000, "balance_after": 1000, "type": "credit", "reference": "top"},
    ]
    assert set(body["results"][0]) == {"transfer", "amount", "balance_after", "type", "reference", "created_at"}
    for row in body["results"]:  # every id the API shows is a UUID string (API.md)
        assert str(uuid.UUID(row["transfer"])) == row["transfer"]
    paged = merchant_api.get(f"{WALLETS}/{customer.pk}/ledger?limit=1&page=2").json()
    assert paged["results"][0]["amount"] == 1000 and paged["previous"] is not None
    assert wallet.pk


# --- credit / debit ------------------------------------------------------------------


def test_credit_returns_the_wallet_and_writes_the_event(merchant_api, customer):
    WalletFactory(customer=customer)
    response = _post(merchant_api, f"{WALLETS}/{customer.pk}/credit", {"amount": 500, "currency": "usd", "reason": "x"})
    assert response.status_code == 200, response.content
    assert (response.json()["balance"], response.json()["available"]) == (500, 500)
    event = OutboundEvent.objects.get(type="wallet.credited")
    assert event.merchant_id == customer.merchant_id and event.data["amount"] == 500


def test_debit_402_changes_nothing(merchant_api, customer):
    wallet = WalletFactory(customer=customer, balance=100)
    transfers = Transfer.objects.count()
    response = _post(merchant_api, f"{WALLETS}/{customer.pk}/debit", {"amount": 101, "currency": "usd"})
    error = _error(response, 402, "insufficient_funds")
    assert response.json()["error"]["type"] == "payment_error"
    assert error["message"]
    assert Account.objects.get(pk=wallet.pk).balance == 100
    assert Transfer.objects.count() == transfers
    assert not OutboundEvent.objects.filter(type="wallet.debited").exists()


def test_debit_writes_the_event(merchant_api, customer):
    WalletFactory(customer=customer, balance=100)
    response = _post(merchant_api, f"{WALLETS}/{customer.pk}/debit", {"amount": 60, "currency": "usd"})
    assert response.status_code == 200 and response.json()["balance"] == 40
    assert OutboundEvent.objects.get(type="wallet.debited").data["balance"] == 40


@pytest.mark.parametrize("amount", [0, -1, 1.5, "100", True, None, 10**13])
def test_money_endpoints_refuse_non_integer_or_out_of_range_amounts(merchant_api, customer, amount):
    WalletFactory(customer=customer, balance=100)
    for action in ("credit", "debit", "holds"):
        response = _post(merchant_api, f"{WALLETS}/{customer.pk}/{action}", {"amount": amount, "currency": "usd"})
        _error(response, 400, "invalid_request_error", "amount")
    assert Account.objects.get(customer=customer).balance == 100


def test_credit_in_a_currency_the_customer_has_no_wallet_in(merchant_api, customer):
    _error(_post(merchant_api, f"{WALLETS}/{customer.pk}/credit", {"amount": 1, "currency": "usd"}), 404, "not_found")
    WalletFactory(customer=customer, currency="usd")
    response = _post(merchant_api, f"{WALLETS}/{customer.pk}/credit", {"amount": 1, "currency": "eur"})
    _error(response, 400, "invalid_request_error", "currency")
    assert Transfer.objects.filter(currency="eur").count() == 0


def test_credit_another_merchants_customer_is_404_and_moves_nothing(merchant_api):
    stranger = CustomerFactory(merchant=MerchantFactory())
    wallet = WalletFactory(customer=stranger)
    response = _post(merchant_api, f"{WALLETS}/{stranger.pk}/credit", {"amount": 100, "currency": "usd"})
    _error(response, 404, "not_found")
    assert Account.objects.get(pk=wallet.pk).balance == 0


def test_idempotent_credit_replays_and_moves_once(merchant_api, customer):
    wallet = WalletFactory(customer=customer)
    path, body = f"{WALLETS}/{customer.pk}/credit", {"amount": 700, "currency": "usd"}
    first = _post(merchant_api, path, body, **{"Idempotency-Key": "credit-1"})
    again = _post(merchant_api, path, body, **{"Idempotency-Key": "credit-1"})
    assert first.status_code == again.status_code == 200
    assert again.headers["Idempotent-Replayed"] == "true"
    assert again.json() == first.json()
    assert Account.objects.get(pk=wallet.pk).balance == 700
    assert OutboundEvent.objects.filter(type="wallet.credited").count() == 1
    other = _post(merchant_api, path, {"amount": 1, "currency": "usd"}, **{"Idempotency-Key": "credit-1"})
    _error(other, 400, "idempotency_error")


def test_idempotent_debit_402_replays_as_402_after_a_top_up(merchant_api, customer):
    wallet = WalletFactory(customer=customer, balance=10)
    path, body = f"{WALLETS}/{customer.pk}/debit", {"amount": 50, "currency": "usd"}
    _error(_post(merchant_api, path, body, **{"Idempotency-Key": "d-1"}), 402, "insufficient_funds")
    wallet_credit(wallet=wallet, amount=100)
    replay = _post(merchant_api, path, body, **{"Idempotency-Key": "d-1"})
    _error(replay, 402, "insufficient_funds")
    assert Account.objects.get(pk=wallet.pk).balance == 110


# --- the Idempotency-Key reaches the ledger -------------------------------------------


def _lose_the_idempotency_record(key: str) -> None:
    """What a crash between the money's commit and the API's bookkeeping leaves behind:
    the key's record still in flight, and, once it has expired, a retry that runs the view
    again. Only the ledger's own copy of the key can then tell it is a repeat."""
    from config.models import IdempotencyKey

    rows = IdempotencyKey.objects.filter(key=key).update(
        state=IdempotencyKey.State.IN_FLIGHT,
        response_status=None,
        response_body=None,
        created_at=timezone.now() - timedelta(days=2),
    )
    assert rows == 1


@pytest.mark.parametrize(
    ("action", "expected_balance", "event"),
    [("credit", 1000 + 300, "wallet.credited"), ("debit", 1000 - 300, "wallet.debited")],
)
def test_a_retry_after_a_crash_before_the_bookkeeping_moves_nothing(
    merchant_api, customer, action, expected_balance, event
):
    wallet = WalletFactory(customer=customer, balance=1000)
    path, body = f"{WALLETS}/{customer.pk}/{action}", {"amount": 300, "currency": "usd"}
    first = _post(merchant_api, path, body, **{"Idempotency-Key": "crash-1"})
    assert first.status_code == 200 and first.json()["balance"] == expected_balance
    transfers = Transfer.objects.count()
    _lose_the_idempotency_record("crash-1")

    retry = _post(merchant_api, path, body, **{"Idempotency-Key": "crash-1"})

    assert retry.status_code == 200, retry.content
    assert "Idempotent-Replayed" not in retry.headers  # the view ran again: the ledger deduplicated
    assert retry.json()["balance"] == expected_balance
    assert Account.objects.get(pk=wallet.pk).balance == expected_balance
    assert Transfer.objects.count() == transfers
    assert OutboundEvent.objects.filter(type=event, data__amount=300).count() == 1
    transfer = Transfer.objects.get(kind=action, amount=300)
    assert transfer.idempotency_key.startswith("api:") and transfer.idempotency_key.endswith(":crash-1")

    _lose_the_idempotency_record("crash-1")
    other = _post(merchant_api, path, {"amount": 301, "currency": "usd"}, **{"Idempotency-Key": "crash-1"})
    _error(other, 409, "conflict")
    assert Account.objects.get(pk=wallet.pk).balance == expected_balance


def test_a_hold_retry_after_a_crash_before_the_bookkeeping_reserves_nothing(merchant_api, customer):
    wallet = WalletFactory(customer=customer, balance=1000)
    path, body = f"{WALLETS}/{customer.pk}/holds", {"amount": 300, "currency": "usd", "reference": "bid"}
    first = _post(merchant_api, path, body, **{"Idempotency-Key": "crash-h"})
    assert first.status_code == 201
    _lose_the_idempotency_record("crash-h")

    retry = _post(merchant_api, path, body, **{"Idempotency-Key": "crash-h"})

    assert retry.status_code == 201, retry.content
    assert retry.json()["id"] == first.json()["id"]
    assert Hold.objects.count() == 1
    assert Account.objects.get(pk=wallet.pk).held == 300

    _lose_the_idempotency_record("crash-h")
    other = _post(merchant_api, path, {**body, "amount": 200}, **{"Idempotency-Key": "crash-h"})
    _error(other, 409, "conflict")
    assert Account.objects.get(pk=wallet.pk).held == 300


def test_the_ledger_key_is_scoped_to_the_caller_like_the_idempotency_key(merchant_api, customer, django_user_model):
    """Staff acting for the merchant and the merchant's own key are different callers:
    the same Idempotency-Key string from each is two requests, as the API layer says."""
    from rest_framework.test import APIClient

    wallet = WalletFactory(customer=customer)
    staff = django_user_model.objects.create_user("ops", password="pw", is_staff=True)
    staff_api = APIClient()
    staff_api.force_login(staff)
    path, body = f"{WALLETS}/{customer.pk}/credit", {"amount": 100, "currency": "usd"}
    assert _post(merchant_api, path, body, **{"Idempotency-Key": "k"}).status_code == 200
    as_staff = {"Idempotency-Key": "k", "X-Paydesk-Merchant": str(customer.merchant_id)}
    assert _post(staff_api, path, body, **as_staff).status_code == 200
    assert Account.objects.get(pk=wallet.pk).balance == 200
    assert Transfer.objects.filter(kind="credit", idempotency_key__endswith=":k").count() == 2


def test_a_maximum_length_idempotency_key_still_reaches_the_ledger(merchant_api, customer):
    wallet = WalletFactory(customer=customer)
    key = "k" * 255
    path, body = f"{WALLETS}/{customer.pk}/credit", {"amount": 100, "currency": "usd"}
    assert _post(merchant_api, path, body, **{"Idempotency-Key": key}).status_code == 200
    _lose_the_idempotency_record(key)
    assert _post(merchant_api, path, body, **{"Idempotency-Key": key}).status_code == 200
    assert Account.objects.get(pk=wallet.pk).balance == 100
    assert Transfer.objects.get(kind="credit").idempotency_key.startswith("api:sha256:")


def test_requests_without_an_idempotency_key_are_each_their_own(merchant_api, customer):
    wallet = WalletFactory(customer=customer)
    path, body = f"{WALLETS}/{customer.pk}/credit", {"amount": 100, "currency": "usd"}
    for _ in range(2):
        assert _post(merchant_api, path, body).status_code == 200
    assert Account.objects.get(pk=wallet.pk).balance == 200
    assert not Transfer.objects.filter(idempotency_key__isnull=False).exists()


# --- holds ---------------------------------------------------------------------------


def test_hold_create_capture(merchant_api, customer):
    wallet = WalletFactory(customer=customer, balance=1000)
    expires = (timezone.now() + timedelta(hours=1)).isoformat()
    response = _post(
        merchant_api,
        f"{WALLETS}/{customer.pk}/holds",
        {"amount": 400, "currency": "usd", "reference": "bid-1", "expires_at": expires},
    )
    assert response.status_code == 201, response.content
    hold = response.json()
    assert (hold["status"], hold["amount"], hold["wallet"], hold["currency"]) == ("pending", 400, str(wallet.pk), "usd")
    assert merchant_api.get(f"{WALLETS}/{customer.pk}").json()["available"] == 600

    captured = _post(merchant_api, f"/api/v1/holds/{hold['id']}/capture", {"amount": 150})
    assert captured.status_code == 200, captured.content
    assert (captured.json()["status"], captured.json()["captured_amount"]) == ("captured", 150)
    assert merchant_api.get(f"{WALLETS}/{customer.pk}").json() | {"id": None} == {
        "id": None,
        "customer": str(customer.pk),
        "currency": "usd",
        "balance": 850,
        "available": 850,
        "held": 0,
    }
    _error(_post(merchant_api, f"/api/v1/holds/{hold['id']}/capture"), 409, "conflict")
    _error(_post(merchant_api, f"/api/v1/holds/{hold['id']}/void"), 409, "conflict")


def test_hold_void_then_capture_is_409(merchant_api, customer):
    WalletFactory(customer=customer, balance=1000)
    hold = _post(merchant_api, f"{WALLETS}/{customer.pk}/holds", {"amount": 400, "currency": "usd"}).json()
    voided = _post(merchant_api, f"/api/v1/holds/{hold['id']}/void")
    assert voided.status_code == 200 and voided.json()["status"] == "voided"
    _error(_post(merchant_api, f"/api/v1/holds/{hold['id']}/capture"), 409, "conflict")
    assert merchant_api.get(f"{WALLETS}/{customer.pk}").json()["available"] == 1000


def test_capture_full_by_default_and_above_hold_is_400(merchant_api, customer):
    WalletFactory(customer=customer, balance=1000)
    hold = _post(merchant_api, f"{WALLETS}/{customer.pk}/holds", {"amount": 400, "currency": "usd"}).json()
    _error(_post(merchant_api, f"/api/v1/holds/{hold['id']}/capture", {"amount": 401}), 400, "invalid_request_error")
    captured = _post(merchant_api, f"/api/v1/holds/{hold['id']}/capture")
    assert captured.json()["captured_amount"] == 400


def test_hold_above_available_is_402(merchant_api, customer):
    WalletFactory(customer=customer, balance=100)
    response = _post(merchant_api, f"{WALLETS}/{customer.pk}/holds", {"amount": 101, "currency": "usd"})
    _error(response, 402, "insufficient_funds")
    assert not Hold.objects.exists()


def test_hold_with_past_expiry_is_400(merchant_api, customer):
    WalletFactory(customer=customer, balance=100)
    past = (timezone.now() - timedelta(minutes=1)).isoformat()
    response = _post(
        merchant_api, f"{WALLETS}/{customer.pk}/holds", {"amount": 1, "currency": "usd", "expires_at": past}
    )
    _error(response, 400, "invalid_request_error", "expires_at")


def test_idempotent_hold_create(merchant_api, customer):
    WalletFactory(customer=customer, balance=100)
    path, body = f"{WALLETS}/{customer.pk}/holds", {"amount": 60, "currency": "usd"}
    first = _post(merchant_api, path, body, **{"Idempotency-Key": "h-1"})
    again = _post(merchant_api, path, body, **{"Idempotency-Key": "h-1"})
    assert first.status_code == again.status_code == 201
    assert again.json()["id"] == first.json()["id"]
    assert Hold.objects.count() == 1


def test_holds_of_another_merchant_are_404(merchant_api):
    stranger = CustomerFactory(merchant=MerchantFactory())
    hold = hold_create(account=WalletFactory(customer=stranger, balance=100), amount=50)
    _error(_post(merchant_api, f"/api/v1/holds/{hold.pk}/capture"), 404, "not_found")
    _error(_post(merchant_api, f"/api/v1/holds/{hold.pk}/void"), 404, "not_found")
    _error(_post(merchant_api, f"/api/v1/holds/{uuid.uuid4()}/void"), 404, "not_found")
    _error(_post(merchant_api, "/api/v1/holds/nope/void"), 404, "not_found")
    assert Hold.objects.get(pk=hold.pk).status == "pending"


def test_staff_reads_any_wallet_but_must_name_a_merchant_to_write(client, customer, django_user_model):
    from rest_framework.test import APIClient

    WalletFactory(customer=customer, balance=100)
    staff = django_user_model.objects.create_user("ops", password="pw", is_staff=True)
    api = APIClient()
    api.force_login(staff)
    assert api.get(f"{WALLETS}/{customer.pk}").json()["balance"] == 100
    response = api.post(f"{WALLETS}/{customer.pk}/credit", {"amount": 5, "currency": "usd"}, format="json")
    _error(response, 400, "invalid_request_error", "merchant")
    response = api.post(
        f"{WALLETS}/{customer.pk}/credit",
        {"amount": 5, "currency": "usd"},
        format="json",
        headers={"X-Paydesk-Merchant": str(customer.merchant_id)},
    )
    assert response.status_code == 200 and response.json()["balance"] == 105


def test_end_user_jwt_cannot_use_wallet_endpoints(api, customer, make_jwt):
    WalletFactory(customer=customer, balance=100)
    api.credentials(HTTP_AUTHORIZATION=f"Bearer {make_jwt(customer.pk)}")
    assert api.get(f"{WALLETS}/{customer.pk}").status_code == 403
