"""Known data for the dashboard tests: fixed amounts at fixed offsets from `now`, so each
figure can be worked out by hand (the expected values are in test_selectors.py).

Payments, refunds, charges, installments, deliveries and events are written as rows (the
dashboard only reads them); balances and credits go through the wallets and credits
services, so the ledger behind them is real and the audit is clean.
"""

from dataclasses import dataclass
from datetime import date, datetime, time, timedelta

from django.utils import timezone

from credits.services import credits_debit, credits_grant
from installments.models import Installment, InstallmentOrder
from payments.models import Charge, Merchant, Payment, Refund
from payments.tests.factories import CustomerFactory, MerchantFactory
from wallets.services import hold_create, wallet_create, wallet_credit, wallet_debit
from webhooks.models import Delivery, InboundEvent, OutboundEvent, WebhookEndpoint

H, D = timedelta(hours=1), timedelta(days=1)


@dataclass
class Seeded:
    acme: Merchant
    beta: Merchant
    today: date


def _payment(merchant, currency, amount, status, created_at, *, reason="", refunded=0, n=[0]):  # noqa: B006
    n[0] += 1
    payment = Payment.objects.create(
        merchant=merchant,
        order_id=f"dash-{n[0]}",
        amount=amount,
        currency=currency,
        amount_refunded=refunded,
        provider="mock",
        status=status,
        failure_reason=reason,
    )
    Payment.objects.filter(pk=payment.pk).update(created_at=created_at)
    return payment


def _refund(payment, amount, status, created_at):
    refund = Refund.objects.create(payment=payment, amount=amount, provider_amount=amount, status=status)
    Refund.objects.filter(pk=refund.pk).update(created_at=created_at)
    return refund


def _charge(merchant, customer, amount, status, created_at, reason=""):
    payment = _payment(merchant, "usd", amount, "failed" if status == "failed" else status, created_at - D * 400)
    charge = Charge.objects.create(
        merchant=merchant,
        customer=customer,
        payment=payment,
        amount=amount,
        currency="usd",
        external_amount=amount,
        status=status,
        failure_reason=reason,
        provider="mock",
    )
    Charge.objects.filter(pk=charge.pk).update(created_at=created_at)


def _order(merchant, customer, currency, status, installments):
    order = InstallmentOrder.objects.create(
        merchant=merchant,
        customer=customer,
        amount=sum(amount for _, amount, _ in installments),
        currency=currency,
        status=status,
        interval="month",
    )
    for sequence, (due, amount, state) in enumerate(installments):
        Installment.objects.create(
            order=order,
            sequence=sequence,
            due_date=due,
            amount=amount,
            status=state,
            next_attempt_at=timezone.make_aware(datetime.combine(due, time.min)),
        )
    return order


def seed(now, *, suffix: str = "") -> Seeded:
    """Seed it all once more with another `suffix`: two more merchants, their own ids."""
    acme = MerchantFactory(name=f"Acme{suffix}")
    beta = MerchantFactory(name=f"Beta{suffix}")
    today = timezone.localtime(now).date()

    # --- Payments and refunds -----------------------------------------------------------
    p1 = _payment(acme, "usd", 2599, "succeeded", now - H)
    p2 = _payment(acme, "usd", 10000, "partially_refunded", now - 2 * D, refunded=2500)
    p3 = _payment(acme, "usd", 5000, "refunded", now - 10 * D, refunded=5000)
    _payment(acme, "usd", 700, "failed", now - 3 * H, reason="card_declined")
    _payment(acme, "usd", 800, "failed", now - 4 * H, reason="card_declined")
    _payment(acme, "usd", 900, "failed", now - 5 * D, reason="mock: The payment provider could not be reached.")
    _payment(acme, "usd", 1500, "pending", now - 2 * H)  # stuck: past the reconciliation threshold
    _payment(acme, "usd", 1200, "pending", now - timedelta(minutes=5))
    _payment(acme, "usd", 300, "canceled", now - D)
    _payment(acme, "usd", 400, "expired", now - 40 * D)
    _payment(acme, "usd", 100000, "succeeded", now - 100 * D)
    _refund(p2, 2500, "succeeded", now - D)
    _refund(p3, 5000, "succeeded", now - 3 * D)
    _refund(p1, 1000, "failed", now - H)
    _refund(p2, 500, "pending", now - H)
    _payment(beta, "usd", 4000, "succeeded", now - D)
    _payment(beta, "usd", 600, "failed", now - D)
    _payment(acme, "jpy", 2599, "succeeded", now - D)
    j2 = _payment(acme, "jpy", 1000, "refunded", now - D, refunded=1000)
    _refund(j2, 1000, "succeeded", now - D)
    _payment(beta, "eur", 1999, "succeeded", now - 6 * D)

    # --- Wallets, holds, merchant balances, credits (through the services) ----------------
    c1, c2 = CustomerFactory(merchant=acme), CustomerFactory(merchant=acme)
    c3 = CustomerFactory(merchant=beta)
    w1, w2, w3 = (wallet_create(customer=c, currency="usd") for c in (c1, c2, c3))
    wallet_credit(wallet=w1, amount=5000)
    wallet_credit(wallet=w2, amount=2500)
    wallet_credit(wallet=w3, amount=1000)
    hold_create(account=w1, amount=1500)
    wallet_debit(wallet=w2, amount=500)  # into Acme's balance
    eur = wallet_create(customer=c1, currency="eur")
    wallet_credit(wallet=eur, amount=777)

    sold, _ = credits_grant(customer=c1, units=100, source="stripe_checkout", stripe_event_id=f"evt_dash_1{suffix}")
    credits_grant(customer=c1, units=50, source="staff", reason="goodwill")
    older, _ = credits_grant(customer=c3, units=40, source="stripe_invoice", stripe_event_id=f"evt_dash_2{suffix}")
    credits_debit(customer=c1, units=30)
    type(sold).objects.filter(pk=sold.pk).update(created_at=now - D)
    type(older).objects.filter(pk=older.pk).update(created_at=now - 20 * D)
    type(sold).objects.exclude(pk__in=[sold.pk, older.pk]).update(created_at=now - 2 * D)

    # --- Declined charges ----------------------------------------------------------------
    _charge(acme, c1, 1200, "failed", now - D, "card_declined")
    _charge(acme, c1, 800, "failed", now - 2 * D, "the provider never confirmed the card part")
    _charge(acme, c1, 500, "failed", now - 20 * D, "card_declined")
    _charge(acme, c1, 900, "succeeded", now - D)

    # --- Installments (as of today) --------------------------------------------------------
    day = lambda n: today + timedelta(days=n)  # noqa: E731
    _order(
        acme,
        c1,
        "usd",
        "active",
        [
            (day(-19), 1000, "paid"),
            (day(-5), 1000, "failed"),  # overdue and in dunning
            (day(0), 1000, "scheduled"),  # due today
            (day(7), 1000, "scheduled"),  # second week
            (day(29), 1000, "scheduled"),  # last day of the 30
            (day(30), 1000, "scheduled"),  # the day after
        ],
    )
    _order(
        acme,
        c2,
        "usd",
        "active",
        [(day(-10), 2000, "scheduled"), (day(0), 500, "processing"), (day(2), 700, "scheduled")],
    )
    _order(
        beta,
        c3,
        "usd",
        "defaulted",
        [(day(-60), 300, "paid"), (day(-50), 300, "defaulted"), (day(-20), 300, "defaulted")],
    )
    _order(beta, c3, "eur", "active", [(day(0), 999, "scheduled")])

    # --- Webhooks, in and out ------------------------------------------------------------
    def endpoint(**kwargs):
        return WebhookEndpoint.objects.create(
            merchant=acme, url="https://example.com/hook", events=["none"], secret="s", **kwargs
        )

    live = endpoint()
    endpoint(enabled=False, disabled_reason="disabled after 50 failures")
    endpoint(enabled=False, deleted_at=now - D)
    for status in ["retrying", "retrying", "failed", "delivered", "delivered", "pending"]:
        event = OutboundEvent.objects.create(merchant=acme, type="payment.succeeded", data={})
        Delivery.objects.create(event=event, endpoint=live, status=status, next_attempt_at=now)
    for i, (status, flagged, received) in enumerate(
        [
            ("failed", False, now - H),
            ("failed", True, now - 30 * D),
            ("processed", True, now - D),
            ("processed", False, now),
        ]
    ):
        event = InboundEvent.objects.create(
            provider="mock",
            event_id=f"evt_in_{i}{suffix}",
            type="payment.succeeded",
            payload={},
            raw_body="{}",
            status=status,
            flagged=flagged,
        )
        InboundEvent.objects.filter(pk=event.pk).update(received_at=received)
    return Seeded(acme=acme, beta=beta, today=today)
