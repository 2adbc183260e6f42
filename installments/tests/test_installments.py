from datetime import UTC, date, datetime, timedelta

import pytest
from django.utils import timezone

from installments.models import InstallmentOrder
from installments.services import (
    installment_collect,
    installment_order_create,
    installments_claim,
    installments_collect,
)
from payments.models import Charge
from payments.providers.mock import DECLINING_METHOD
from wallets.selectors import ledger_audit
from wallets.services import wallet_create, wallet_credit
from webhooks.models import OutboundEvent

pytestmark = pytest.mark.django_db
URL = "/api/v1/installments/orders"


def run(now, **kw):
    return list(installments_collect(now=now, **kw))


@pytest.fixture
def wallet(customer):
    w = wallet_create(customer=customer, currency="usd")
    wallet_credit(wallet=w, amount=100_000)
    return w


def day(d: date, hour=12) -> datetime:
    return datetime(d.year, d.month, d.day, hour, tzinfo=UTC)


class Crash(Exception):
    pass


def _order_with_down_payment(client, customer, **headers):
    """POST a 1000 usd order in 3 monthly installments after a down payment of 100."""
    body = {
        "customer": str(customer.pk),
        "amount": 1000,
        "currency": "usd",
        "down_payment": 100,
        "installment_count": 3,
        "interval": "month",
    }
    return client.post(URL, body, format="json", **headers)


def crash(**kwargs):
    raise Crash("the process died here")


class TestApi:
    def test_equal_split_with_month_end_clamping(self, merchant_api, customer):
        response = merchant_api.post(
            URL,
            {
                "customer": str(customer.pk),
                "amount": 1000,
                "currency": "USD",
                "installment_count": 3,
                "interval": "month",
                "start_date": "2027-01-31",
            },
            format="json",
        )
        assert response.status_code == 201, response.content
        body = response.json()
        assert body["status"] == "active" and body["currency"] == "usd"
        assert [(i["due_date"], i["amount"]) for i in body["installments"]] == [
            ("2027-01-31", 334),
            ("2027-02-28", 333),
            ("2027-03-31", 333),
        ]

    def test_zero_decimal_currency(self, merchant_api, customer):
        body = merchant_api.post(
            URL,
            {
                "customer": str(customer.pk),
                "amount": 10001,
                "currency": "jpy",
                "installment_count": 4,
                "interval": "week",
            },
            format="json",
        ).json()
        assert [i["amount"] for i in body["installments"]] == [2501, 2500, 2500, 2500]

    def test_explicit_schedule_that_does_not_sum_is_400_naming_schedule(self, merchant_api, customer):
        response = merchant_api.post(
            URL,
            {
                "customer": str(customer.pk),
                "amount": 1000,
                "currency": "usd",
                "schedule": [{"due_date": "2027-01-01", "amount": 300}, {"due_date": "2027-02-01", "amount": 600}],
            },
            format="json",
        )
        assert response.status_code == 400 and response.json()["error"]["param"] == "schedule"

    @pytest.mark.parametrize(
        "body,param",
        [
            ({"installment_count": 3}, "interval"),
            ({"interval": "month"}, "installment_count"),
            ({"installment_count": 5, "interval": "month", "amount": 4}, "installment_count"),
            ({"installment_count": 2, "interval": "year"}, "interval"),
            ({"installment_count": 2, "interval": "month", "currency": "xxx"}, "currency"),
        ],
    )
    def test_bad_orders_are_400(self, merchant_api, customer, body, param):
        response = merchant_api.post(
            URL, {"customer": str(customer.pk), "amount": 1000, "currency": "usd", **body}, format="json"
        )
        assert response.status_code == 400 and response.json()["error"]["param"] == param

    def test_an_empty_schedule_is_400_naming_schedule(self, merchant_api, customer):
        response = merchant_api.post(
            URL, {"customer": str(customer.pk), "amount": 1000, "currency": "usd", "schedule": []}, format="json"
        )
        assert response.status_code == 400
        error = response.json()["error"]
        assert error["param"] == "schedule" and "at least one installment" in error["message"]
        assert not InstallmentOrder.objects.exists()

    def test_the_service_refuses_an_empty_schedule_too(self, merchant, customer):
        from config.errors import InvalidRequest

        with pytest.raises(InvalidRequest) as refused:
            installment_order_create(merchant=merchant, customer=customer, amount=1000, currency="usd", schedule=[])
        assert refused.value.param == "schedule"

    @pytest.mark.parametrize("field", ["installment_count", "interval_count"])
    @pytest.mark.parametrize("value", ["3", 3.0, True, None, [3]])
    def test_integer_fields_take_json_integers_only(self, merchant_api, customer, field, value):
        body = {"customer": str(customer.pk), "amount": 1000, "currency": "usd", "installment_count": 3}
        response = merchant_api.post(URL, {**body, "interval": "month", field: value}, format="json")
        assert response.status_code == 400, response.content
        assert response.json()["error"]["param"] == field
        assert not InstallmentOrder.objects.exists()

    def test_description_takes_a_string_only(self, merchant_api, customer):
        body = {"customer": str(customer.pk), "amount": 1000, "currency": "usd", "installment_count": 3}
        response = merchant_api.post(URL, {**body, "interval": "month", "description": 5}, format="json")
        assert response.status_code == 400 and response.json()["error"]["param"] == "description"

    def test_down_payment_is_collected_at_creation(self, merchant_api, customer, wallet):
        body = _order_with_down_payment(merchant_api, customer).json()
        assert body["down_payment"] == 100 and sum(i["amount"] for i in body["installments"]) == 1000
        down = body["installments"][0]
        assert (down["sequence"], down["amount"], down["status"]) == (0, 100, "paid")
        assert down["charges"][0]["status"] == "succeeded"
        assert sum(i["amount"] for i in body["installments"][1:]) == 900
        wallet.refresh_from_db()
        assert wallet.balance == 100_000 - 100
        order = InstallmentOrder.objects.get()
        assert order.down_payment_charge.idempotency_key == f"down:{order.pk}"

    def test_down_payment_that_cannot_be_collected_creates_nothing(self, merchant_api, customer):
        # No card and a wallet that cannot cover it: as POST /charges, a 402 with nothing recorded.
        wallet = wallet_create(customer=customer, currency="usd")
        wallet_credit(wallet=wallet, amount=50)
        response = _order_with_down_payment(merchant_api, customer, HTTP_IDEMPOTENCY_KEY="order-1")
        assert response.status_code == 402
        assert response.json()["error"]["code"] == "insufficient_funds"
        assert response.json()["error"]["param"] == "down_payment"
        assert not InstallmentOrder.objects.exists() and not Charge.objects.exists()
        assert merchant_api.get(URL).json()["count"] == 0
        assert not OutboundEvent.objects.filter(type__startswith="installment").exists()
        wallet.refresh_from_db()
        assert (wallet.balance, wallet.held) == (50, 0)
        assert run(day(date(2030, 1, 1))) == []

    def test_down_payment_declined_by_the_card_is_a_canceled_order(self, merchant_api, customer):
        # As POST /charges answers 201 `failed` for a declined card: the attempt is recorded
        # and the order says what happened; no money is taken and nothing will be collected.
        customer.payment_method = DECLINING_METHOD
        customer.save(update_fields=["payment_method"])
        wallet = wallet_create(customer=customer, currency="usd")
        wallet_credit(wallet=wallet, amount=40)
        response = _order_with_down_payment(merchant_api, customer)
        assert response.status_code == 201, response.content
        body = response.json()
        assert body["status"] == "canceled"
        down, *rest = body["installments"]
        assert (down["sequence"], down["status"], down["last_error"]) == (0, "failed", "card_declined")
        assert [(c["status"], c["wallet_amount"], c["external_amount"]) for c in down["charges"]] == [
            ("failed", 40, 60)
        ]
        assert {i["status"] for i in rest} == {"canceled"}
        assert merchant_api.get(URL).json()["results"][0]["status"] == "canceled"
        wallet.refresh_from_db()
        assert (wallet.balance, wallet.held) == (40, 0)  # the wallet part's hold was released
        assert OutboundEvent.objects.filter(type="installment.failed").count() == 1
        assert run(day(date(2030, 1, 1))) == []
        assert ledger_audit()["ok"]

    def test_list_filters_detail_and_isolation(self, merchant_api, customer, client_for):
        from payments.tests.factories import MerchantFactory

        created = merchant_api.post(
            URL,
            {"customer": str(customer.pk), "amount": 300, "currency": "usd", "installment_count": 3, "interval": "day"},
            format="json",
        ).json()
        assert merchant_api.get(f"{URL}?customer={customer.pk}").json()["count"] == 1
        assert merchant_api.get(f"{URL}?status=completed").json()["count"] == 0
        assert merchant_api.get(f"{URL}/{created['id']}").json()["installments"][0]["charges"] == []
        assert client_for(MerchantFactory()).get(f"{URL}/{created['id']}").status_code == 404


class TestCollection:
    def make(self, merchant, customer, *, count=3, amount=900, start=date(2027, 1, 10)):
        return installment_order_create(
            merchant=merchant,
            customer=customer,
            amount=amount,
            currency="usd",
            installment_count=count,
            interval="month",
            start_date=start,
        )

    def test_due_installments_are_charged_once_and_the_order_completes(self, merchant, customer, wallet):
        order = self.make(merchant, customer)
        assert run(day(date(2027, 1, 9))) == []  # nothing due yet
        assert run(day(date(2027, 1, 10))) == [{"paid": 1}]
        assert run(day(date(2027, 1, 10))) == []  # a second run charges nothing
        assert run(day(date(2027, 3, 10))) == [{"paid": 2}]
        order.refresh_from_db()
        assert order.status == "completed"
        assert Charge.objects.filter(status="succeeded").count() == 3
        wallet.refresh_from_db()
        assert wallet.balance == 100_000 - 900
        types = list(OutboundEvent.objects.order_by("created_at").values_list("type", flat=True))
        assert types.count("installment.paid") == 3 and types[-1] == "installment_order.completed"
        installment = order.installments.get(sequence=1)
        assert installment.charge_attempts.get().charge.status == "succeeded"
        assert ledger_audit()["ok"]

    def test_dunning_retries_on_the_schedule_then_defaults(self, merchant, customer, settings):
        settings.INSTALLMENT_DUNNING_SCHEDULE = [86400, 3 * 86400]
        customer.payment_method = DECLINING_METHOD  # no wallet money, the card declines
        customer.save()
        order = self.make(merchant, customer, count=2)
        t0 = day(date(2027, 1, 10))
        assert run(t0) == [{"failed": 1}]
        first = order.installments.get(sequence=1)
        assert first.next_attempt_at == t0 + timedelta(days=1) and first.attempts == 1
        assert run(t0 + timedelta(hours=23)) == []  # not yet
        assert run(t0 + timedelta(days=1)) == [{"failed": 1}]
        assert run(t0 + timedelta(days=3, hours=23)) == []
        assert run(t0 + timedelta(days=4)) == [{"defaulted": 1}]
        order.refresh_from_db()
        first.refresh_from_db()
        assert (order.status, first.status, first.attempts) == ("defaulted", "defaulted", 3)
        assert OutboundEvent.objects.filter(type="installment.failed").count() == 3
        assert OutboundEvent.objects.filter(type="installment_order.defaulted").count() == 1
        assert run(t0 + timedelta(days=60)) == []  # a defaulted order is not collected any more

    def test_crash_between_charge_and_bookkeeping_does_not_double_charge(
        self, merchant, customer, wallet, monkeypatch, settings
    ):
        """One by one, the charge and its bookkeeping are two transactions: die between them."""
        from installments import collection

        settings.INSTALLMENT_COLLECT_SET_BASED = False
        order = self.make(merchant, customer, count=1, amount=500)
        now = day(date(2027, 1, 10))
        with monkeypatch.context() as m:  # the collector charges, then dies before recording
            m.setattr(collection, "installment_record", crash)
            assert run(now) == [{"error": 1}]
        installment = order.installments.get()
        assert installment.status == "processing" and Charge.objects.get().status == "succeeded"
        assert run(now + timedelta(minutes=9)) == []  # its claim has not lapsed yet
        # The claim lapses; the rerun finds the same attempt's charge by its key.
        assert run(now + timedelta(minutes=11)) == [{"paid": 1}]
        assert Charge.objects.count() == 1
        assert installment.charge_attempts.get().charge == Charge.objects.get()
        wallet.refresh_from_db()
        assert wallet.balance == 100_000 - 500
        order.refresh_from_db()
        assert order.status == "completed"

    def test_a_collector_dying_inside_a_set_based_chunk_leaves_nothing_half_done(
        self, merchant, customer, wallet, monkeypatch
    ):
        """Set-based, a balance shard's charges and bookkeeping are one transaction (one
        shard here): a process that dies in it leaves no charge and no money moved; the
        rerun collects once."""
        from installments import bookkeeping

        class ProcessDied(BaseException):  # not an Exception: nothing catches it, as with a real death
            pass

        def die(**kwargs):
            raise ProcessDied

        order = self.make(merchant, customer, count=2, amount=500, start=date(2027, 1, 1))
        now = day(date(2027, 3, 1))
        with monkeypatch.context() as m, pytest.raises(ProcessDied):
            m.setattr(bookkeeping, "events_emit", die)  # after the charges, before the chunk commits
            run(now)
        assert set(order.installments.values_list("status", flat=True)) == {"processing"}
        assert not Charge.objects.exists()
        wallet.refresh_from_db()
        assert wallet.balance == 100_000
        assert run(now + timedelta(minutes=11)) == [{"paid": 2}]
        assert Charge.objects.count() == 2
        wallet.refresh_from_db()
        assert wallet.balance == 100_000 - 500
        order.refresh_from_db()
        assert order.status == "completed"

    @pytest.mark.postgres  # on SQLite the ledger writes each wallet's balance on its own
    def test_a_set_based_chunk_is_the_same_few_statements_whatever_its_size(self, merchant):
        """Claim, charge from wallets and book (paid, orders completed): no statement per
        row, so a chunk of 12 costs what a chunk of 4 does."""
        from django.db import connection
        from django.test.utils import CaptureQueriesContext

        from payments.tests.factories import CustomerFactory

        def chunk_statements(customers: int) -> int:
            for _ in range(customers):
                customer = CustomerFactory(merchant=merchant)
                wallet_credit(wallet=wallet_create(customer=customer, currency="usd"), amount=1000)
                self.make(merchant, customer, count=2, amount=200, start=date(2027, 1, 1))
            with CaptureQueriesContext(connection) as statements:
                assert run(day(date(2027, 3, 1)), chunk=100) == [{"paid": 2 * customers}]
            assert not InstallmentOrder.objects.filter(status="active").exists()
            return len(statements)

        small = chunk_statements(2)
        assert chunk_statements(6) == small < 60

    def test_limit_stops_and_the_next_run_resumes(self, merchant, customer, wallet):
        self.make(merchant, customer, count=5, amount=500, start=date(2027, 1, 1))
        now = day(date(2027, 12, 31))
        assert sum(sum(c.values()) for c in run(now, limit=2, chunk=1)) == 2
        assert sum(sum(c.values()) for c in run(now)) == 3
        assert Charge.objects.count() == 5

    def test_pay_next_early_then_everything_left(self, merchant_api, merchant, customer, wallet):
        order = self.make(merchant, customer, count=3, amount=900)
        url = f"{URL}/{order.pk}/pay"
        body = merchant_api.post(url, {}, format="json").json()
        assert [i["status"] for i in body["installments"]] == ["paid", "scheduled", "scheduled"]
        wrong = merchant_api.post(url, {"amount": 450}, format="json")
        assert wrong.status_code == 400 and wrong.json()["error"]["param"] == "amount"
        body = merchant_api.post(url, {"amount": 600}, format="json").json()
        assert body["status"] == "completed" and {i["status"] for i in body["installments"]} == {"paid"}
        assert Charge.objects.filter(status="succeeded").count() == 2
        assert merchant_api.post(url, {}, format="json").status_code == 409

    def test_pay_declined_by_the_card_is_402_card_declined(self, merchant_api, merchant, customer):
        customer.payment_method = DECLINING_METHOD
        customer.save(update_fields=["payment_method"])
        order = self.make(merchant, customer)
        response = merchant_api.post(f"{URL}/{order.pk}/pay", {}, format="json")
        assert response.status_code == 402
        assert response.json()["error"] == {
            "type": "payment_error",
            "code": "card_declined",
            "message": "The card was declined (card_declined).",
            "param": None,
        }

    def test_pay_with_a_short_wallet_and_no_card_is_402_insufficient_funds(self, merchant_api, merchant, customer):
        order = self.make(merchant, customer)
        response = merchant_api.post(f"{URL}/{order.pk}/pay", {}, format="json")
        assert response.status_code == 402
        assert (response.json()["error"]["type"], response.json()["error"]["code"]) == (
            "payment_error",
            "insufficient_funds",
        )

    @pytest.mark.parametrize("with_key", [False, True])
    def test_cancel_with_a_malformed_body_is_400_and_cancels_nothing(self, merchant_api, merchant, customer, with_key):
        order = self.make(merchant, customer)
        headers = {"HTTP_IDEMPOTENCY_KEY": "cancel-1"} if with_key else {}
        for raw in ["{bad", "[1]"]:
            response = merchant_api.post(
                f"{URL}/{order.pk}/cancel", data=raw, content_type="application/json", **headers
            )
            assert response.status_code == 400, (raw, response.content)
        order.refresh_from_db()
        assert order.status == "active"
        empty = merchant_api.post(f"{URL}/{order.pk}/cancel", data="", content_type="application/json")
        assert empty.status_code == 200 and empty.json()["status"] == "canceled"

    def test_cancel_keeps_paid_installments(self, merchant_api, merchant, customer, wallet):
        order = self.make(merchant, customer)
        run(day(date(2027, 1, 10)))
        body = merchant_api.post(f"{URL}/{order.pk}/cancel").json()
        assert body["status"] == "canceled"
        assert [i["status"] for i in body["installments"]] == ["paid", "canceled", "canceled"]
        assert run(day(date(2027, 12, 1))) == []
        assert merchant_api.post(f"{URL}/{order.pk}/cancel").status_code == 409

    def test_collect_command(self, merchant, customer, wallet):
        from io import StringIO

        from django.core.management import call_command

        self.make(merchant, customer)
        out = StringIO()
        call_command("collect_installments", "--now", "2027-02-10T12:00:00+00:00", stdout=out, stderr=StringIO())
        assert "paid: 2" in out.getvalue()

    def test_beat_schedule_entry_exists_after_migrate(self):
        from django_celery_beat.models import PeriodicTask

        task = PeriodicTask.objects.get(task="installments.tasks.installments_collect_task")
        assert task.enabled and task.interval.every == 300


def test_single_installment_collect_is_idempotent(merchant, customer, wallet):
    order = installment_order_create(
        merchant=merchant,
        customer=customer,
        amount=100,
        currency="usd",
        installment_count=1,
        interval="day",
        start_date=timezone.localdate(),
    )
    claimed = installments_claim(now=timezone.now() + timedelta(hours=1), chunk=1)[0]
    assert installment_collect(installment=claimed, now=timezone.now()) == "paid"
    assert installment_collect(installment=claimed, now=timezone.now()) == "paid"  # replayed: nothing new
    assert Charge.objects.count() == 1
    order.refresh_from_db()
    assert order.status == "completed"


def test_admin_shows_each_installments_charge_key_and_timeline(admin_client, merchant, customer, wallet):
    order = installment_order_create(
        merchant=merchant,
        customer=customer,
        amount=300,
        currency="usd",
        installment_count=3,
        interval="day",
        start_date=date(2027, 1, 1),
        down_payment=30,
    )
    response = admin_client.get(f"/admin/installments/installmentorder/{order.pk}/change/")
    assert response.status_code == 200
    assert f"down:{order.pk}".encode() in response.content
    assert b"installment.processing" in response.content
