"""Benchmarks of the identity and payments APIs through the whole stack in-process:
django.test.Client, so middleware, URL routing, DRF authentication, throttling and
rendering all run. charge-wallet-http sends POST /api/v1/charges over real HTTP instead
(config.bench.HttpBench, the harness of wallet-debit-http).

Each run makes its own merchant (`bench-<scenario>-<hex>`) and leaves it behind.
"""

import random
import uuid

from django.test import Client

from config.bench import WARMUP, Timer, check, scenario
from payments.identity.models import Customer, Merchant
from payments.identity.services import api_key_create, customer_create, merchant_create

CUSTOMERS = "/api/v1/customers"


def _bench_client(name: str, out) -> tuple[Merchant, Client]:
    """A new merchant and a client that sends its test API key on every request.

    Send requests with `secure=True`: with DEBUG off, SECURE_SSL_REDIRECT answers plain
    HTTP with a redirect.
    """
    merchant = merchant_create(name=f"bench-{name}-{uuid.uuid4().hex[:12]}")
    _, raw_key = api_key_create(merchant=merchant, name="bench")
    out(f"{name}: merchant {merchant.name} ({merchant.pk})")
    return merchant, Client(headers={"Authorization": f"Bearer {raw_key}"})


@scenario(
    "api-auth",
    help="GET /api/v1/customers/<id> with a merchant API key: authentication, throttle, one read.",
    n=2000,
)
def api_auth(*, n: int, out) -> dict:
    merchant, client = _bench_client("api-auth", out)
    customer = customer_create(merchant=merchant, external_id="bench-1", email="bench-1@example.com")
    path = f"{CUSTOMERS}/{customer.pk}"

    for _ in range(WARMUP):
        response = client.get(path, secure=True)
        check(response.status_code == 200, f"warmup GET {path}: {response.status_code} {response.content[:300]!r}")
    timer = Timer()
    for _ in range(n):
        with timer:
            response = client.get(path, secure=True)
        check(response.status_code == 200, f"GET {path}: {response.status_code} {response.content[:300]!r}")
    check(response.json()["id"] == str(customer.pk), "GET returned another customer")
    return timer.result()


@scenario(
    "idempotent-create",
    help="POST /api/v1/customers with an Idempotency-Key: fresh keys (each creates) and replays of one key.",
    n=2000,
)
def idempotent_create(*, n: int, out) -> list[dict]:
    merchant, client = _bench_client("idempotent-create", out)

    def post(key: str, external_id: str):
        body = {"external_id": external_id, "email": f"{external_id}@example.com"}
        return client.post(
            CUSTOMERS, body, content_type="application/json", headers={"Idempotency-Key": key}, secure=True
        )

    def created_so_far() -> int:
        return Customer.objects.filter(merchant=merchant).count()

    def check_created(response, what: str) -> None:
        check(
            response.status_code == 201 and "Idempotent-Replayed" not in response.headers,
            f"{what}: {response.status_code} {dict(response.headers)} {response.content[:300]!r}",
        )

    def check_replayed(response, what: str) -> None:
        check(
            response.status_code == 201 and response.headers.get("Idempotent-Replayed") == "true",
            f"{what}: {response.status_code} {dict(response.headers)} {response.content[:300]!r}",
        )

    # (a) Every request a new key and a new customer.
    for i in range(WARMUP):
        check_created(post(str(uuid.uuid4()), f"warmup-{i}"), "warmup create")
    before = created_so_far()
    keys = [str(uuid.uuid4()) for _ in range(n)]
    timer = Timer()
    for i, key in enumerate(keys):
        with timer:
            response = post(key, f"fresh-{i}")
        check_created(response, "create")
        if i == 0:
            first_id = response.json()["id"]
    created = created_so_far() - before
    check(created == n, f"{n} fresh requests created {created} customers")
    fresh = {"scenario": "idempotent-create:fresh", **timer.result(), "created": created, "expected": n}

    # (b) The first key again, same body: the saved response, nothing created.
    for _ in range(WARMUP):
        check_replayed(post(keys[0], "fresh-0"), "warmup replay")
    before = created_so_far()
    timer = Timer()
    for _ in range(n):
        with timer:
            response = post(keys[0], "fresh-0")
        check_replayed(response, "replay")
    check(response.json()["id"] == first_id, "a replay returned another customer than the original request")
    created = created_so_far() - before
    check(created == 0, f"{n} replays created {created} customers")
    replay = {
        "scenario": "idempotent-create:replay",
        **timer.result(),
        "replayed": n,
        "created": created,
        "expected": 0,
    }

    return [fresh, replay]


@scenario("payment-create", help="POST /api/v1/payments (mock provider): quota token, insert, provider call.", n=1000)
def payment_create_bench(*, n: int, out) -> dict:
    from payments.models import Payment

    merchant = merchant_create(name=f"bench-payment-create-{uuid.uuid4().hex[:12]}", quota=n + WARMUP + 10)
    _, raw_key = api_key_create(merchant=merchant, name="bench")
    client = Client(headers={"Authorization": f"Bearer {raw_key}"})

    def post(order_id: str):
        body = {"order_id": order_id, "amount": 1999, "currency": "usd", "provider": "mock"}
        return client.post("/api/v1/payments", body, content_type="application/json", secure=True)

    for i in range(WARMUP):
        check(post(f"warmup-{i}").status_code == 201, "warmup create failed")
    timer = Timer()
    for i in range(n):
        with timer:
            response = post(f"order-{i}")
        check(response.status_code == 201, f"create: {response.status_code} {response.content[:300]!r}")
    created = Payment.objects.filter(merchant=merchant, order_id__startswith="order-").count()
    check(created == n, f"{n} creates made {created} payments")
    return {**timer.result(), "created": created, **_ledger_audit()}


@scenario("payment-webhook", help="Signed provider notifications settling distinct payments.", n=1000)
def payment_webhook_bench(*, n: int, out) -> dict:
    import json as _json

    from django.conf import settings as dj_settings

    from payments.models import Payment
    from payments.services import payment_create
    from webhooks.signing import sign

    merchant = merchant_create(name=f"bench-payment-webhook-{uuid.uuid4().hex[:12]}", quota=n + WARMUP + 10)
    payments = [
        payment_create(merchant=merchant, order_id=f"o-{i}", amount=500, currency="usd", provider="mock")
        for i in range(n + WARMUP)
    ]
    out(f"payment-webhook: {len(payments)} pending payments created")
    client = Client()
    secret = dj_settings.MOCK_WEBHOOK_SECRET.split(",")[0]

    def notify(payment):
        raw = _json.dumps(
            {
                "provider": "mock",
                "provider_payment_id": payment.provider_payment_id,
                "status": "paid",
                "amount": payment.amount,
                "currency": payment.currency,
            }
        )
        return client.post(
            "/api/v1/payments/webhook",
            raw,
            content_type="application/json",
            headers={"X-Paydesk-Signature": sign(raw, secret)},
            secure=True,
        )

    for payment in payments[:WARMUP]:
        check(notify(payment).status_code == 200, "warmup notification failed")
    timer = Timer()
    for payment in payments[WARMUP:]:
        with timer:
            response = notify(payment)
        check(response.status_code == 200, f"notify: {response.status_code} {response.content[:300]!r}")
    settled = Payment.objects.filter(merchant=merchant, status="succeeded").count()
    check(settled == n + WARMUP, f"{settled} of {n + WARMUP} payments succeeded")
    return {**timer.result(), "settled": settled - WARMUP, **_ledger_audit()}


def _ledger_audit() -> dict:
    """The ledger audit's verdict over the whole ledger, printed beside money figures."""
    from wallets.selectors import ledger_audit

    report = ledger_audit()
    violations = sorted(k for k, v in report["violations"].items() if v)
    return {"ledger_audit": "ok" if report["ok"] else f"FAILED: {violations}"}


@scenario("charge-wallet", help="Wallet-funded charges with a 3-way split, through the charges service.", n=1000)
def charge_wallet_bench(*, n: int, out) -> dict:
    from payments.charges import charge_create
    from wallets.models import Account
    from wallets.services import wallet_create, wallet_credit

    merchant = merchant_create(name=f"bench-charge-wallet-{uuid.uuid4().hex[:12]}")
    customers = [customer_create(merchant=merchant, external_id=f"c-{i}") for i in range(100)]
    for customer in customers:
        wallet_credit(wallet=wallet_create(customer=customer, currency="usd"), amount=1_000_000)
    splits = [
        {"destination": "seller", "bps": 7000},
        {"destination": "platform", "bps": 1000},
        {"destination": "courier", "amount": 25},
    ]
    for i in range(WARMUP):
        charge_create(
            merchant=merchant, customer=customers[i % 100], amount=1000, currency="usd", split_instructions=splits
        )
    timer = Timer()
    for i in range(n):
        with timer:
            charge = charge_create(
                merchant=merchant, customer=customers[i % 100], amount=1000, currency="usd", split_instructions=splits
            )
        check(charge.status == "succeeded", f"charge {charge.pk} is {charge.status}")
    total = n + WARMUP
    seller = Account.objects.get(merchant=merchant, kind="recipient", name="seller").balance
    check(seller == 700 * total, f"seller got {seller}, expected {700 * total}")
    return {**timer.result(), "seller_balance": seller, **_ledger_audit()}


@scenario(
    "charge-wallet-http",
    help=(
        "POST /api/v1/charges over HTTP (HttpBench), each covered by the customer's wallet, with and without "
        "Idempotency-Key; every answer, the wallets and the audit checked (target 250/s)."
    ),
    n=500,
)
def charge_wallet_http(*, n: int, out) -> list[dict]:
    from collections import Counter

    from config.bench import HttpBench, ratio
    from payments.models import Charge
    from wallets.models import Account
    from wallets.services import merchant_balance, wallet_create, wallet_credit

    target, amount, currency = 250, 1000, "usd"
    merchant = merchant_create(name=f"bench-charge-wallet-http-{uuid.uuid4().hex[:12]}")
    _, raw_key = api_key_create(merchant=merchant, name="bench")
    auth = {"Authorization": f"Bearer {raw_key}"}
    out(f"charge-wallet-http: merchant {merchant.name} ({merchant.pk})")
    customers = [customer_create(merchant=merchant, external_id=f"c-{i}") for i in range(100)]
    # Each wallet covers every charge of both runs, whichever customers they fall on.
    wallets = {c.pk: wallet_create(customer=c, currency=currency) for c in customers}
    for wallet in wallets.values():
        wallet_credit(wallet=wallet, amount=(2 * n + WARMUP) * amount)

    def balances() -> dict:
        pks = [w.pk for w in wallets.values()]
        found = dict(Account.objects.filter(pk__in=pks).values_list("pk", "balance"))
        return {**found, "merchant": merchant_balance(merchant=merchant, currency=currency)}

    results = []
    with HttpBench(out) as http:

        def charges(targets, keyed: bool) -> list[bytes]:
            return [
                http.request(
                    "POST",
                    "/api/v1/charges",
                    headers={**auth, **({"Idempotency-Key": uuid.uuid4().hex} if keyed else {})},
                    body={"customer": str(c.pk), "amount": amount, "currency": currency, "description": "bench"},
                )
                for c in targets
            ]

        http.run(charges([customers[i % len(customers)] for i in range(WARMUP)], keyed=True), expect=201)
        for keyed in (True, False):
            label = "idempotency-key" if keyed else "no-key"
            ops = [customers[i % len(customers)] for i in range(n)]
            random.Random(7).shuffle(ops)
            requests = charges(ops, keyed)
            before, charged_before = balances(), Charge.objects.filter(merchant=merchant).count()
            figures, bodies = http.run(requests, expect=201, keep_bodies=True)
            for customer, body in zip(ops, bodies, strict=True):
                check(
                    body["status"] == "succeeded"
                    and body["customer"] == str(customer.pk)
                    and (body["wallet_amount"], body["external_amount"]) == (amount, 0),
                    f"{label}: a wallet-covered charge answered {body}",
                )
            check(len({body["id"] for body in bodies}) == n, f"{label}: {n} charges answered with repeated ids")
            after = balances()
            per_customer = Counter(c.pk for c in ops)
            wrong = {
                pk: before[w.pk] - after[w.pk]
                for pk, w in wallets.items()
                if before[w.pk] - after[w.pk] != per_customer[pk] * amount
            }
            check(not wrong, f"{label}: wallets dropped other than charged, e.g. {dict(list(wrong.items())[:3])}")
            gain = after["merchant"] - before["merchant"]
            check(gain == n * amount, f"{label}: merchant balance gained {gain}, not {n * amount}")
            made = Charge.objects.filter(merchant=merchant).count() - charged_before
            check(made == n, f"{label}: {made} charges recorded for {n} requests")
            results.append(
                {
                    "scenario": f"charge-wallet-http:{label}",
                    **figures,
                    "customers": len(customers),
                    "charged": made,
                    "target_ops_per_s": target,
                    "vs_target": ratio(figures["ops_per_s"], target),
                }
            )
            out(f"  {label}: {results[-1]}")
    audit = _ledger_audit()
    check(audit["ledger_audit"] == "ok", f"charge-wallet-http: {audit['ledger_audit']}")
    return [{**result, **audit} for result in results]
