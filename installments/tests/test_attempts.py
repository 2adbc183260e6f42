"""One attempt, one charge key, whichever path makes it: collector, early payment or down
payment; crashes, pending charges, reused client keys, declines, closed orders."""

from datetime import date, timedelta

import pytest
from django.utils import timezone

from config.models import IdempotencyKey
from installments import collection, orders
from installments.models import Installment, InstallmentEvent, InstallmentOrder
from installments.services import (
    installment_order_create,
    installment_order_pay,
    installment_record,
    installments_claim,
    installments_collect,
)
from installments.tasks import installments_collect_task
from installments.tests.test_installments import Crash, crash, day, run
from payments.charges import charge_create, charges_resolve_pending
from payments.models import Charge
from payments.providers import ProviderUnavailable
from payments.providers.mock import DECLINING_METHOD, MockProvider
from wallets.selectors import ledger_audit
from wallets.services import wallet_create, wallet_credit

pytestmark = pytest.mark.django_db
URL = "/api/v1/installments/orders"
CARD = "pm_card_visa"


@pytest.fixture
def wallet(customer):
    w = wallet_create(customer=customer, currency="usd")
    wallet_credit(wallet=w, amount=100_000)
    return w


@pytest.fixture
def card(customer):
    customer.payment_method = CARD
    customer.save(update_fields=["payment_method"])
    return customer


@pytest.fixture
def provider_down(monkeypatch):
    """The card provider cannot be reached until the returned function is called."""

    def unreachable(self, **kwargs):
        raise ProviderUnavailable("connection timed out")

    with monkeypatch.context() as m:
        m.setattr(MockProvider, "charge_off_session", unreachable)
        yield m.undo


def resolve_pending():
    """What the periodic resolver does once the provider answers again."""
    charges_resolve_pending(older_than=timedelta(0))


def later(minutes=11):
    """After the claim lease of anything claimed just now."""
    return timezone.now() + timedelta(minutes=minutes)


def make(merchant, customer, *, count=3, amount=900, start=date(2027, 1, 10), **kw):
    return installment_order_create(
        merchant=merchant,
        customer=customer,
        amount=amount,
        currency="usd",
        installment_count=count,
        interval="month",
        start_date=start,
        **kw,
    )


def balance(wallet):
    wallet.refresh_from_db()
    return wallet.balance


# --- 1. pay early: crash, pending --------------------------------------------------------


def test_pay_early_crash_between_charge_and_bookkeeping_does_not_double_charge(merchant, customer, wallet, monkeypatch):
    order = make(merchant, customer)
    with monkeypatch.context() as m:
        m.setattr(orders, "installment_record", crash)
        with pytest.raises(Crash):
            installment_order_pay(order=order)
    first = order.installments.get(sequence=1)
    assert first.status == "processing" and first.charge_key == f"pay:{order.pk}:1"
    assert Charge.objects.get().status == "succeeded" and balance(wallet) == 100_000 - 300

    # The collector re-claims the lapsed claim and books the early payment's charge.
    assert run(later()) == [{"paid": 1}]
    first.refresh_from_db()
    assert first.status == "paid" and first.charge_attempts.get().charge.idempotency_key == f"pay:{order.pk}:1"
    assert Charge.objects.count() == 1 and balance(wallet) == 100_000 - 300
    assert run(later(30)) == []


def test_pay_everything_crash_then_the_collector_books_every_installment_with_the_one_charge(
    merchant, customer, wallet, monkeypatch
):
    order = make(merchant, customer)
    with monkeypatch.context() as m:
        m.setattr(orders, "installment_record", crash)
        with pytest.raises(Crash):
            installment_order_pay(order=order, amount=900)
    assert run(later()) == [{"paid": 3}]
    charge = Charge.objects.get()
    assert charge.amount == 900 and balance(wallet) == 100_000 - 900
    assert {i.charge_attempts.get().charge for i in order.installments.all()} == {charge}
    order.refresh_from_db()
    assert order.status == "completed"


def test_pay_early_that_died_before_charging_is_charged_once_by_the_collector(merchant, customer, wallet, monkeypatch):
    """The claim committed, the process died before charge_create: the collector makes
    the early payment's charge with the claimed key (the same amount: all it claimed)."""
    order = make(merchant, customer)
    with monkeypatch.context() as m:
        m.setattr(orders, "_charge", crash)
        with pytest.raises(Crash):
            installment_order_pay(order=order, amount=900)
    assert not Charge.objects.exists()
    assert run(later()) == [{"paid": 3}]
    assert Charge.objects.get().idempotency_key == f"pay:{order.pk}:1" and balance(wallet) == 100_000 - 900


@pytest.mark.parametrize("outcome", ["paid", "declined"])
def test_pay_early_pending_charge_stays_processing_until_it_resolves(
    merchant_api, merchant, card, provider_down, outcome
):
    order = make(merchant, card)
    response = merchant_api.post(f"{URL}/{order.pk}/pay", {}, format="json")
    assert response.status_code == 200, response.content
    assert [i["status"] for i in response.json()["installments"]] == ["processing", "scheduled", "scheduled"]
    charge = Charge.objects.get()
    assert charge.status == "pending"

    assert run(later()) == [{"processing": 1}]  # re-claimed, charge still pending: nothing new
    assert Charge.objects.count() == 1
    assert merchant_api.post(f"{URL}/{order.pk}/pay", {}, format="json").status_code == 409

    provider_down()
    if outcome == "declined":
        card.payment_method = DECLINING_METHOD
        card.save(update_fields=["payment_method"])
    resolve_pending()
    first = order.installments.get(sequence=1)
    assert first.status == "processing"  # booked by the collector's next re-claim
    expected = "paid" if outcome == "paid" else "scheduled"  # a failed early payment is undone
    assert run(later(25)) == [{expected: 1}]
    first.refresh_from_db()
    assert first.status == expected and Charge.objects.count() == 1
    assert first.attempts == 0  # an early payment is not a collection attempt
    assert first.charge_attempts.get().charge == charge


def test_collection_pending_charge_is_booked_when_it_resolves(merchant, card, provider_down):
    order = make(merchant, card, count=1, amount=500)
    now = day(date(2027, 1, 10))
    assert run(now) == [{"processing": 1}]
    assert run(now + timedelta(minutes=11)) == [{"processing": 1}]
    provider_down()
    resolve_pending()
    assert run(now + timedelta(minutes=22)) == [{"paid": 1}]
    assert Charge.objects.get().status == "succeeded"
    order.refresh_from_db()
    assert order.status == "completed"


# --- 2. client Idempotency-Keys never reach the charge ---------------------------------------


def expire_client_keys():
    """Idempotency-Keys are kept 24 hours; after that a client may send one again."""
    IdempotencyKey.objects.update(created_at=timezone.now() - timedelta(days=2))


def test_the_same_client_key_on_pay_for_two_orders_charges_both(merchant_api, merchant, customer, wallet):
    a, b = make(merchant, customer), make(merchant, customer)
    headers = {"HTTP_IDEMPOTENCY_KEY": "pay-next"}
    assert merchant_api.post(f"{URL}/{a.pk}/pay", {}, format="json", **headers).status_code == 200
    expire_client_keys()
    response = merchant_api.post(f"{URL}/{b.pk}/pay", {}, format="json", **headers)
    assert response.status_code == 200
    assert response.json()["installments"][0]["status"] == "paid"
    charges = list(Charge.objects.order_by("created_at"))
    assert len(charges) == 2 and balance(wallet) == 100_000 - 600  # B was charged, not handed A's charge
    paid_b = b.installments.get(sequence=1).charge_attempts.get().charge
    assert paid_b == charges[1] != a.installments.get(sequence=1).charge_attempts.get().charge
    assert not any("pay-next" in c.idempotency_key for c in charges)


def test_the_same_client_key_after_its_record_expired_finds_the_first_order(merchant_api, customer, wallet):
    """The order carries the caller's key for good (config/api/idempotency.py): the same
    order sent again once the API's record of the key is gone is the first order, with
    its one down payment; another order under that key is a 409."""
    body = {
        "customer": str(customer.pk),
        "amount": 1000,
        "currency": "usd",
        "down_payment": 100,
        "installment_count": 3,
        "interval": "month",
    }
    ids = set()
    for _ in range(2):
        response = merchant_api.post(URL, body, format="json", HTTP_IDEMPOTENCY_KEY="order-1")
        assert response.status_code == 201
        assert response.json()["installments"][0]["status"] == "paid"
        ids.add(response.json()["id"])
        expire_client_keys()
    assert len(ids) == 1
    assert Charge.objects.count() == 1 and balance(wallet) == 100_000 - 100
    other = merchant_api.post(URL, {**body, "amount": 2000}, format="json", HTTP_IDEMPOTENCY_KEY="order-1")
    assert other.status_code == 409, other.content
    assert InstallmentOrder.objects.count() == 1


# --- 3. a retry after a declined early payment is a new attempt ---------------------------


def test_pay_early_after_a_decline_makes_a_new_charge(merchant_api, merchant, customer):
    customer.payment_method = DECLINING_METHOD
    customer.save(update_fields=["payment_method"])
    order = make(merchant, customer)
    url = f"{URL}/{order.pk}/pay"
    declined = merchant_api.post(url, {}, format="json")
    assert declined.status_code == 402
    first = order.installments.get(sequence=1)
    assert (first.status, first.attempts) == ("scheduled", 0)  # as it was; no dunning attempt spent

    customer.payment_method = CARD
    customer.save(update_fields=["payment_method"])
    response = merchant_api.post(url, {}, format="json")
    assert response.status_code == 200, response.content
    assert response.json()["installments"][0]["status"] == "paid"
    assert sorted(Charge.objects.values_list("idempotency_key", "status")) == [
        (f"pay:{order.pk}:1", "failed"),
        (f"pay:{order.pk}:2", "succeeded"),
    ]
    assert [c["status"] for c in response.json()["installments"][0]["charges"]] == ["failed", "succeeded"]


# --- 4. a pending down payment is booked against its order ----------------------------------


@pytest.mark.parametrize("outcome", ["paid", "declined"])
def test_pending_down_payment_is_recorded_against_the_order(merchant_api, merchant, card, provider_down, outcome):
    response = merchant_api.post(
        URL,
        {
            "customer": str(card.pk),
            "amount": 1000,
            "currency": "usd",
            "down_payment": 100,
            "installment_count": 3,
            "interval": "month",
            "start_date": "2027-01-10",
        },
        format="json",
    )
    assert response.status_code == 201, response.content
    body = response.json()
    assert body["status"] == "active" and body["installments"][0]["status"] == "processing"
    order = InstallmentOrder.objects.get(pk=body["id"])
    charge = Charge.objects.get()
    assert charge.status == "pending" and charge.idempotency_key == f"down:{order.pk}"

    provider_down()
    if outcome == "declined":
        card.payment_method = DECLINING_METHOD
        card.save(update_fields=["payment_method"])
    resolve_pending()
    assert run(later()) == [{"paid" if outcome == "paid" else "failed": 1}]
    order.refresh_from_db()
    down = order.installments.get(sequence=0)
    assert down.charge_attempts.get().charge == charge and Charge.objects.count() == 1
    if outcome == "paid":
        assert (down.status, order.status, order.down_payment_charge) == ("paid", "active", charge)
    else:
        assert (down.status, order.status) == ("failed", "canceled")
        assert set(order.installments.exclude(sequence=0).values_list("status", flat=True)) == {"canceled"}


# --- 5. a closed order is neither charged nor reopened --------------------------------------


def test_a_sibling_in_the_same_chunk_of_a_just_defaulted_order_is_not_charged(merchant, customer, settings):
    settings.INSTALLMENT_DUNNING_SCHEDULE = [86400]
    wallet = wallet_create(customer=customer, currency="usd")
    wallet_credit(wallet=wallet, amount=100)  # enough for the second installment only; no card
    order = installment_order_create(
        merchant=merchant,
        customer=customer,
        amount=600,
        currency="usd",
        schedule=[{"due_date": date(2027, 1, 1), "amount": 500}, {"due_date": date(2027, 1, 2), "amount": 100}],
    )
    first = order.installments.get(sequence=1)
    Installment.objects.filter(pk=first.pk).update(status="failed", attempts=1)  # its last retry is due
    assert run(day(date(2027, 1, 3)), chunk=10) == [{"defaulted": 2}]
    order.refresh_from_db()
    assert order.status == "defaulted"
    assert list(order.installments.values_list("status", flat=True)) == ["defaulted", "defaulted"]
    assert not Charge.objects.exists() and balance(wallet) == 100


def test_a_charge_booked_after_the_order_closed_is_paid_but_does_not_reopen_the_order(merchant, customer, wallet):
    order = make(merchant, customer, count=2, amount=600)
    now = day(date(2027, 1, 10))
    claimed = installments_claim(now=now, chunk=1)[0]
    charge = charge_create(
        merchant=merchant, customer=customer, amount=300, currency="usd", idempotency_key=claimed.charge_key
    )
    InstallmentOrder.objects.filter(pk=order.pk).update(status="defaulted")  # meanwhile, elsewhere
    status = installment_record(
        installment_id=claimed.pk, charge_key=claimed.charge_key, charge=charge, error="", now=now
    )
    assert status == "paid"  # the money was taken: booked
    order.refresh_from_db()
    assert order.status == "defaulted"  # but the order stays closed


# --- 6. the beat task drains the backlog within a time budget -------------------------------


def test_the_task_loops_chunk_after_chunk_until_the_budget_is_spent(merchant, customer, wallet, settings, monkeypatch):
    settings.INSTALLMENT_COLLECT_CHUNK = 2
    make(merchant, customer, count=5, amount=500, start=timezone.localdate() - timedelta(days=200))
    clock = iter(range(0, 10_000, 100))  # every look at the clock: 100 s later
    with monkeypatch.context() as m:
        m.setattr(collection, "_clock", lambda: next(clock))
        assert installments_collect_task(budget_seconds=150) == {"paid": 2}  # one chunk, then out of time
    assert installments_collect_task() == {"paid": 3}  # no cap on the count: drains the rest
    assert Charge.objects.count() == 5


def test_collect_with_a_budget_stops_between_chunks(merchant, customer, wallet, monkeypatch):
    make(merchant, customer, count=4, amount=400, start=date(2027, 1, 1))
    clock = iter(range(0, 10_000, 100))
    with monkeypatch.context() as m:
        m.setattr(collection, "_clock", lambda: next(clock))
        assert list(installments_collect(now=day(date(2027, 12, 1)), chunk=1, budget_seconds=250)) == [
            {"paid": 1},
            {"paid": 1},
        ]


def one_by_one_run(monkeypatch, order_now, **kw) -> list:
    """A collection run where every look at the clock is 100 s after the previous one,
    and every installment goes one by one (charge_create: one provider call each)."""
    clock = iter(range(0, 10_000, 100))
    with monkeypatch.context() as m:
        m.setattr(collection, "_clock", lambda: next(clock))
        return list(installments_collect(now=order_now, chunk=10, **kw))


def assert_each_charged_once(order, total):
    assert Charge.objects.count() == total
    for installment in order.installments.all():
        assert installment.status == "paid" and installment.attempts == 1
        assert installment.charge_attempts.get().charge.idempotency_key == installment.charge_key


def test_one_by_one_stops_at_the_deadline_and_releases_what_it_did_not_reach(
    merchant, customer, wallet, settings, monkeypatch
):
    """A run out of time mid-chunk gives up the claims of the installments it has not
    charged, so the next run takes them at once (not after the lease), as the same
    attempt with the same charge key: each is charged once."""
    settings.INSTALLMENT_COLLECT_SET_BASED = False
    order = make(merchant, customer, count=4, amount=400, start=date(2027, 1, 1))
    now = day(date(2027, 12, 1))
    assert one_by_one_run(monkeypatch, now, budget_seconds=250) == [{"paid": 1}]
    released = order.installments.filter(status="processing")
    assert released.count() == 3 and not released.exclude(claimed_at=None).exists()
    events = InstallmentEvent.objects.filter(type="installment.released")
    assert set(events.values_list("installment_id", flat=True)) == set(released.values_list("pk", flat=True))
    assert run(now) == [{"paid": 3}]  # the same `now`: no lease has lapsed, the claims were released
    assert_each_charged_once(order, 4)
    assert_timeline_complete(order)


def test_no_claim_outlives_half_its_lease_however_long_the_run(merchant, customer, wallet, settings, monkeypatch):
    """With no budget (the collect_installments command), a chunk whose provider calls
    take longer than half the claim's lease releases the rest and claims it again,
    stamped with the time it is claimed, so no other collector sees a lapsed claim of a
    collector still at work."""
    settings.INSTALLMENT_COLLECT_SET_BASED = False
    order = make(merchant, customer, count=4, amount=400, start=date(2027, 1, 1))
    now = day(date(2027, 12, 1))
    reclaims = []
    real_claim = collection.installments_claim

    def claim(**kwargs):
        reclaims.append(kwargs["at"] - now)
        return real_claim(**kwargs)

    monkeypatch.setattr(collection, "installments_claim", claim)
    assert one_by_one_run(monkeypatch, now) == [{"paid": 2}, {"paid": 2}]  # lease/2 = 300 s of 100 s looks
    assert reclaims == [timedelta(seconds=100), timedelta(seconds=500), timedelta(seconds=800)]
    assert_each_charged_once(order, 4)
    assert_timeline_complete(order)


# --- 7. every status change is on the timeline ------------------------------------------------


def assert_timeline_complete(order):
    """Replaying each installment's timeline from its creation reaches its status, every
    event starting where the previous one ended; the order's likewise."""
    for installment in order.installments.all():
        state = "processing" if installment.sequence == 0 else "scheduled"
        events = InstallmentEvent.objects.filter(installment=installment).exclude(from_status="", to_status="")
        for event in events.order_by("created_at", "id"):
            if event.from_status:
                assert event.from_status == state, (installment.sequence, event.type, event.from_status, state)
            state = event.to_status
        assert state == installment.status, (installment.sequence, state, installment.status)
    state = ""
    for event in InstallmentEvent.objects.filter(order=order, installment=None).order_by("created_at", "id"):
        assert event.from_status == state
        state = event.to_status
    order.refresh_from_db()
    assert state == order.status


def test_every_installment_and_order_status_change_has_a_timeline_event(
    merchant, merchant_api, customer, wallet, settings, monkeypatch
):
    settings.INSTALLMENT_DUNNING_SCHEDULE = [86400]
    settings.INSTALLMENT_COLLECT_SET_BASED = False  # the crash below is between two transactions
    order = make(merchant, customer, count=4, amount=400, down_payment=100, start=date(2027, 1, 10))
    run(day(date(2027, 1, 10)))  # collected
    merchant_api.post(f"{URL}/{order.pk}/pay", {}, format="json")  # paid early
    with monkeypatch.context() as m:  # a crash, then a re-claim
        m.setattr(collection, "installment_record", crash)
        run(day(date(2027, 3, 10)))
    run(day(date(2027, 3, 10)) + timedelta(minutes=11))
    assert set(order.installments.values_list("status", flat=True)) == {"paid", "scheduled"}
    assert InstallmentEvent.objects.filter(order=order, type="installment.processing").count() == 4
    assert InstallmentEvent.objects.filter(order=order, type="installment.reclaimed").count() == 1
    assert_timeline_complete(order)

    declining = make(merchant, customer, count=2, amount=200, start=date(2027, 1, 10))
    customer.payment_method = DECLINING_METHOD
    customer.save(update_fields=["payment_method"])
    Installment.objects.filter(order=declining).update(amount=100_000)  # more than the wallet holds
    merchant_api.post(f"{URL}/{declining.pk}/pay", {}, format="json")  # declined early payment
    run(day(date(2027, 1, 10)))  # fails
    run(day(date(2027, 1, 12)))  # defaults, with its order and its sibling
    assert_timeline_complete(declining)
    declining.refresh_from_db()
    assert declining.status == "defaulted"

    canceled = make(merchant, customer, count=2, amount=200)
    merchant_api.post(f"{URL}/{canceled.pk}/cancel")
    assert_timeline_complete(canceled)
    assert ledger_audit()["ok"]


def test_set_based_collection_writes_the_same_timeline_and_events_as_one_by_one(merchant, customer, wallet, settings):
    from webhooks.models import OutboundEvent

    outcomes = {}
    for set_based in (True, False):
        settings.INSTALLMENT_COLLECT_SET_BASED = set_based
        order = make(merchant, customer, count=3, amount=300, start=date(2027, 1, 10))
        OutboundEvent.objects.all().delete()
        assert run(day(date(2027, 4, 1))) == [{"paid": 3}]
        assert_timeline_complete(order)
        order.refresh_from_db()
        events = OutboundEvent.objects.order_by("created_at")
        outcomes[set_based] = (
            order.status,
            list(InstallmentEvent.objects.filter(order=order).order_by("id").values_list("type", flat=True)),
            sorted(events.values_list("type", flat=True)),
            [i.charge_attempts.get().charge.payment.status for i in order.installments.all()],
        )
    assert outcomes[True] == outcomes[False]
    assert outcomes[True][0] == "completed"
