"""Charges: wallet first, the saved card for the rest, splits, refunds back to source."""

import threading

import pytest
from django.db import connection

from payments.charges import charge_create
from payments.models import Charge, Payment
from payments.providers.mock import DECLINING_METHOD
from payments.services import payment_refund
from payments.tests.factories import CustomerFactory
from wallets.models import Account
from wallets.selectors import ledger_audit
from wallets.services import merchant_balance as wallets_merchant_balance
from wallets.services import wallet_create, wallet_credit
from webhooks.models import OutboundEvent

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("shards")]
URL = "/api/v1/charges"


@pytest.fixture
def funded(customer):
    """The customer's usd wallet holding 1000."""
    wallet = wallet_create(customer=customer, currency="usd")
    wallet_credit(wallet=wallet, amount=1000)
    return wallet


def balance(account) -> tuple[int, int]:
    account.refresh_from_db()
    return account.balance, account.held


def merchant_balance(merchant, currency="usd") -> int:
    return wallets_merchant_balance(merchant=merchant, currency=currency)


def assert_ledger_clean():
    report = ledger_audit()
    assert report["ok"], report["violations"]


def test_wallet_covers_everything(merchant_api, merchant, customer, funded):
    response = merchant_api.post(URL, {"customer": str(customer.pk), "amount": 600, "currency": "usd"}, format="json")
    assert response.status_code == 201, response.content
    body = response.json()
    assert (body["status"], body["wallet_amount"], body["external_amount"]) == ("succeeded", 600, 0)
    assert balance(funded) == (400, 0)
    assert merchant_balance(merchant) == 600
    assert Payment.objects.get(pk=body["payment"]).status == "succeeded"
    assert OutboundEvent.objects.filter(type="charge.succeeded").count() == 1
    assert_ledger_clean()


def test_partial_wallet_and_card(merchant_api, merchant, customer, funded):
    customer.payment_method = "mock_card_ok"
    customer.save()
    body = merchant_api.post(
        URL, {"customer": str(customer.pk), "amount": 1500, "currency": "usd"}, format="json"
    ).json()
    assert (body["status"], body["wallet_amount"], body["external_amount"]) == ("succeeded", 1000, 500)
    assert body["provider"] == "mock" and body["provider_charge_id"].startswith("mock_ch_")
    assert balance(funded) == (0, 0)
    assert merchant_balance(merchant) == 1500
    assert_ledger_clean()


def test_card_decline_leaves_the_wallet_untouched(merchant_api, merchant, customer, funded):
    customer.payment_method = DECLINING_METHOD
    customer.save()
    response = merchant_api.post(URL, {"customer": str(customer.pk), "amount": 1500, "currency": "usd"}, format="json")
    assert response.status_code == 201
    body = response.json()
    assert body["status"] == "failed" and body["failure_reason"] == "card_declined"
    assert balance(funded) == (1000, 0)  # the hold was voided
    assert merchant_balance(merchant) == 0
    assert Payment.objects.get(pk=body["payment"]).status == "failed"
    event = OutboundEvent.objects.get(type="charge.failed")
    assert event.data["wallet_amount"] == 1000 and event.data["status"] == "failed"
    assert_ledger_clean()


def test_no_card_and_short_wallet_is_402_with_nothing_changed(merchant_api, customer, funded):
    response = merchant_api.post(URL, {"customer": str(customer.pk), "amount": 1001, "currency": "usd"}, format="json")
    assert response.status_code == 402
    assert response.json()["error"]["code"] == "insufficient_funds"
    assert balance(funded) == (1000, 0)
    assert not Charge.objects.exists() and not Payment.objects.exists()


def test_no_wallet_in_that_currency_uses_the_card(merchant_api, customer, funded):
    customer.payment_method = "mock_card_ok"
    customer.save()
    body = merchant_api.post(
        URL, {"customer": str(customer.pk), "amount": 300, "currency": "eur"}, format="json"
    ).json()
    assert (body["wallet_amount"], body["external_amount"], body["status"]) == (0, 300, "succeeded")


def test_splits_are_settled_into_recipients_and_sent_with_the_event(merchant_api, merchant, customer, funded):
    splits = [
        {"destination": "seller-a", "bps": 3333},
        {"destination": "seller-b", "bps": 3333},
        {"destination": "platform-fee", "amount": 10},
    ]
    body = merchant_api.post(
        URL,
        {"customer": str(customer.pk), "amount": 100, "currency": "usd", "split_instructions": splits},
        format="json",
    ).json()
    assert body["status"] == "succeeded" and body["split_instructions"] == splits
    recipients = dict(Account.objects.filter(kind="recipient", merchant=merchant).values_list("name", "balance"))
    # 66.66% of 100 is 66: floors 33 + 33; the 10 fixed; the merchant keeps 24.
    assert recipients == {"seller-a": 33, "seller-b": 33, "platform-fee": 10}
    assert merchant_balance(merchant) == 24
    assert OutboundEvent.objects.get(type="charge.succeeded").data["split_instructions"] == splits
    assert_ledger_clean()


def test_splits_above_the_amount_are_400(merchant_api, customer, funded):
    response = merchant_api.post(
        URL,
        {
            "customer": str(customer.pk),
            "amount": 100,
            "currency": "usd",
            "split_instructions": [{"destination": "x", "amount": 101}],
        },
        format="json",
    )
    assert response.status_code == 400 and response.json()["error"]["param"] == "split_instructions"
    assert balance(funded) == (1000, 0)


def test_idempotency_key_charges_once(merchant, customer, funded):
    first = charge_create(merchant=merchant, customer=customer, amount=100, currency="usd", idempotency_key="inst-1-1")
    again = charge_create(merchant=merchant, customer=customer, amount=100, currency="usd", idempotency_key="inst-1-1")
    assert first.pk == again.pk and balance(funded) == (900, 0)


def test_list_filters(merchant_api, customer, funded, merchant):
    other = CustomerFactory(merchant=merchant)
    merchant_api.post(URL, {"customer": str(customer.pk), "amount": 100, "currency": "usd"}, format="json")
    merchant_api.post(URL, {"customer": str(other.pk), "amount": 100, "currency": "usd"}, format="json")  # 402
    assert merchant_api.get(f"{URL}?customer={customer.pk}").json()["count"] == 1
    assert merchant_api.get(f"{URL}?status=succeeded").json()["count"] == 1
    assert merchant_api.get(f"{URL}?status=failed").json()["count"] == 0


def test_refund_goes_back_to_the_wallet_then_the_card(merchant, customer, funded):
    customer.payment_method = "mock_card_ok"
    customer.save()
    charge = charge_create(merchant=merchant, customer=customer, amount=1500, currency="usd")
    payment = charge.payment
    first = payment_refund(payment=payment, amount=1200)
    assert (first.wallet_amount, first.provider_amount) == (1000, 200)
    assert balance(funded) == (1000, 0)
    rest = payment_refund(payment=payment)
    assert (rest.wallet_amount, rest.provider_amount) == (0, 300)
    payment.refresh_from_db()
    assert payment.status == "refunded" and merchant_balance(merchant) == 0  # the card part went back via the provider
    clearing = Account.objects.get(kind="provider_clearing", currency="usd", name="mock")
    assert clearing.balance == 0
    assert_ledger_clean()


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_concurrent_charges_never_overdraw_the_wallet(merchant):
    customer = CustomerFactory(merchant=merchant)
    wallet = wallet_create(customer=customer, currency="usd")
    wallet_credit(wallet=wallet, amount=1000)
    barrier, results = threading.Barrier(8), []

    def charge():
        barrier.wait()
        try:
            results.append(charge_create(merchant=merchant, customer=customer, amount=300, currency="usd").status)
        except Exception as exc:  # 402 for the ones the wallet cannot cover
            results.append(type(exc).__name__)
        finally:
            connection.close()

    threads = [threading.Thread(target=charge) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results.count("succeeded") == 3 and results.count("InsufficientFunds") == 5
    wallet.refresh_from_db()
    assert (wallet.balance, wallet.held) == (100, 0)
    assert ledger_audit()["ok"]


def test_charges_from_wallets_posts_what_charge_create_would_and_leaves_the_rest(merchant):
    from config.errors import Conflict
    from payments.charges import WalletCharge, charges_from_wallets

    a, b, c = (CustomerFactory(merchant=merchant) for _ in range(3))
    wallet_a = wallet_create(customer=a, currency="usd")
    wallet_credit(wallet=wallet_a, amount=500)
    wallet_credit(wallet=wallet_create(customer=b, currency="usd"), amount=50)
    requests = [
        WalletCharge(customer=a, amount=200, idempotency_key="k1", order_id="o1"),
        WalletCharge(customer=a, amount=200, idempotency_key="k2", order_id="o2"),
        WalletCharge(customer=a, amount=200, idempotency_key="k3", order_id="o3"),  # 100 left: not covered
        WalletCharge(customer=b, amount=100, idempotency_key="k4", order_id="o4"),  # short
        WalletCharge(customer=c, amount=100, idempotency_key="k5", order_id="o5"),  # no wallet
    ]
    results = charges_from_wallets(merchant=merchant, currency="USD", charges=requests)
    assert [r.status if r else None for r in results] == ["succeeded", "succeeded", None, None, None]
    assert balance(wallet_a) == (100, 0) and merchant_balance(merchant) == 400
    charge = results[0]
    assert (charge.wallet_amount, charge.external_amount, charge.payment.status) == (200, 0, "succeeded")
    assert [e.type for e in charge.payment.timeline.all()] == ["payment.created", "charge.created", "payment.succeeded"]
    types = list(OutboundEvent.objects.order_by("created_at").values_list("type", flat=True))
    assert sorted(types) == sorted(
        ["wallet.debited", "payment.succeeded", "charge.succeeded"] * 2 + ["wallet.credited"] * 2
    )
    # A rerun of the same keys returns the same charges and moves nothing.
    again = charges_from_wallets(merchant=merchant, currency="usd", charges=requests[:2])
    assert [r.pk for r in again] == [r.pk for r in results[:2]] and balance(wallet_a) == (100, 0)
    with pytest.raises(Conflict):
        charges_from_wallets(
            merchant=merchant,
            currency="usd",
            charges=[WalletCharge(customer=b, amount=200, idempotency_key="k1", order_id="x")],
        )
    assert_ledger_clean()
