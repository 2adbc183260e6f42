"""Three months of made-up business for the demo merchants, so the dashboard has something
to show in development (and for the README's screenshot).

Money moves through the services, as the API would move it: payments are created with
the mock provider and settled as its webhook would settle them, refunds go through
payment_refund, wallets and credits through their services, installments are collected
by the collector itself, run once for each past day. Only the dates are made up: rows
are moved back to the day they stand for. Webhook deliveries and inbound events are
written as rows (nothing would answer them), and the periodic tasks are given recent
runs, one of them stalled, as a running beat would leave them.
"""

import random
from datetime import datetime, time, timedelta

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError
from django.utils import timezone

from credits.models import CreditPack
from credits.services import credits_debit, credits_grant
from installments.services import installment_order_create, installments_collect
from payments.identity.models import Customer, Region
from payments.identity.services import merchant_get_or_create
from payments.models import Charge, Payment, Refund
from payments.services import payment_create, payment_refund, payment_settle_from_provider
from wallets.services import hold_create, ledger_audit_run, wallet_create, wallet_credit
from webhooks.models import Delivery, InboundEvent, OutboundEvent, WebhookEndpoint

DAYS = 90
MERCHANTS = [
    # name, region, currency, payments a day (most), amounts (minor units)
    ("Demo Shop", "US", "usd", 9, (900, 24900)),
    ("Berlin Books", "DE", "eur", 4, (1200, 8900)),
    ("Kyoto Crafts", "JP", "jpy", 2, (1500, 48000)),
]
DECLINES = ["Your card was declined.", "Your card has insufficient funds.", "Your card has expired."]
MARKER = "demo-activity-"


class Command(BaseCommand):
    help = (
        "Add three months of made-up payments, refunds, wallets, credits, installments and "
        "webhook trouble for the demo merchants, for the dashboard. Development only (DEBUG on, or --force)."
    )

    def add_arguments(self, parser):
        parser.add_argument("--force", action="store_true", help="Run even with DEBUG off (never in production).")
        parser.add_argument("--seed", type=int, default=13, help="Random seed (the same seed, the same business).")

    def handle(self, *args, force: bool, seed: int, **options):
        if not (settings.DEBUG or force):
            raise CommandError("demo_activity makes up money movements: DEBUG only, or --force on a scratch database.")
        if not settings.MOCK_PROVIDER_ENABLED:
            raise CommandError("demo_activity pays through the mock provider: set MOCK_PROVIDER_ENABLED.")
        if Payment.objects.filter(order_id__startswith=MARKER).exists():
            self.stdout.write("Demo activity is already there: nothing to do.")
            return
        self.rng = random.Random(seed)
        self.now = timezone.now()
        self.today = timezone.localdate()
        for name, region, currency, per_day, amounts in MERCHANTS:
            merchant, _ = merchant_get_or_create(name=name, region=Region.objects.filter(code=region).first())
            customers = self._customers(merchant, 12)
            paid = self._payments(merchant, customers, currency, per_day, amounts)
            self._refunds(paid)
            self._wallets(customers, currency)
            self.stdout.write(f"{name}: {len(paid)} payments collected over {DAYS} days.")
        demo = merchant_get_or_create(name=MERCHANTS[0][0])[0]
        self._credits(demo)
        self._installments(demo)
        self._webhooks(demo)
        self._periodic_tasks()
        audit = ledger_audit_run(trigger="command")
        self.stdout.write(self.style.SUCCESS(f"Demo activity added; ledger audit {'clean' if audit.ok else 'FAILED'}."))

    def _at(self, days_ago: int, hour: int | None = None) -> datetime:
        """A moment `days_ago` days back (at `hour`, or in business hours), never in the future."""
        day = self.today - timedelta(days=days_ago)
        moment = timezone.make_aware(datetime.combine(day, time(hour if hour is not None else self.rng.randint(7, 22))))
        moment += timedelta(minutes=self.rng.randint(0, 59))
        if moment >= self.now:  # today, later than now: some time since midnight instead
            midnight = timezone.make_aware(datetime.combine(self.today, time.min))
            since_midnight = int((self.now - midnight).total_seconds())
            moment = self.now - timedelta(seconds=self.rng.randint(60, max(since_midnight, 120)))
        return moment

    def _customers(self, merchant, count: int) -> list[Customer]:
        customers = []
        for i in range(count):
            customer, _ = Customer.objects.get_or_create(
                merchant=merchant,
                external_id=f"{MARKER}{i + 1}",
                defaults={"email": f"customer{i + 1}@example.com", "name": f"Customer {i + 1}"},
            )
            customers.append(customer)
        return customers

    def _payments(self, merchant, customers, currency: str, per_day: int, amounts) -> list[Payment]:
        paid, n = [], 0
        for days_ago in range(DAYS - 1, -1, -1):
            # Busier lately, quieter at weekends.
            weekend = (self.today - timedelta(days=days_ago)).weekday() >= 5
            count = self.rng.randint(per_day // 3, per_day) + (per_day // 3 if days_ago < 30 else 0)
            for _ in range(count // 2 if weekend else count):
                n += 1
                created = self._at(days_ago)
                payment = payment_create(
                    merchant=merchant,
                    order_id=f"{MARKER}{n}",
                    amount=self.rng.randint(*amounts) // 100 * 100 - (1 if currency != "jpy" else 0),
                    currency=currency,
                    customer=self.rng.choice(customers),
                    provider="mock",
                )
                roll = self.rng.random()
                outcome, reason = "succeeded", ""
                if created > self.now - timedelta(minutes=40) or (days_ago == 0 and roll > 0.97):
                    outcome = None  # still pending: paid by nobody yet (or stuck, past the threshold)
                elif roll > 0.93:
                    outcome, reason = "failed", self.rng.choice(DECLINES)
                elif roll > 0.91:
                    outcome = "canceled"
                elif roll > 0.88:
                    outcome = "expired"
                if outcome:
                    payment_settle_from_provider(
                        payment_id=payment.pk,
                        outcome=outcome,
                        amount=payment.amount if outcome == "succeeded" else None,
                        currency=currency,
                        source="provider_webhook",
                        data={"demo": True},
                        reason=reason,
                    )
                Payment.objects.filter(pk=payment.pk).update(created_at=created)
                if outcome == "succeeded":
                    payment.created_at = created
                    paid.append(payment)
        return paid

    def _refunds(self, paid: list[Payment]) -> None:
        for payment in self.rng.sample(paid, k=len(paid) // 14):
            when = payment.created_at + timedelta(days=self.rng.randint(0, 6), hours=self.rng.randint(1, 8))
            if when >= self.now:
                continue
            part = payment.amount if self.rng.random() < 0.6 else payment.amount // 3
            refund = payment_refund(payment=payment, amount=part, reason="customer request", source="staff")
            Refund.objects.filter(pk=refund.pk).update(created_at=when)

    def _wallets(self, customers, currency: str) -> None:
        for customer in customers[:8]:
            wallet = wallet_create(customer=customer, currency=currency)
            wallet_credit(wallet=wallet, amount=self.rng.randint(20, 300) * 100, reference="demo top-up")
        hold_create(account=wallet, amount=1500, reference="demo auction bid")

    def _credits(self, merchant) -> None:
        pack, _ = CreditPack.objects.get_or_create(
            merchant=merchant,
            code="starter-100",
            defaults={"name": "Starter, 100 credits", "credits": 100, "price_amount": 900, "currency": "usd"},
        )
        customers = list(Customer.objects.filter(merchant=merchant, external_id__startswith=MARKER))
        for i in range(40):
            customer = self.rng.choice(customers)
            grant, _ = credits_grant(
                customer=customer,
                units=pack.credits,
                source="stripe_checkout",
                pack=pack,
                stripe_event_id=f"evt_demo_{i}",
            )
            type(grant).objects.filter(pk=grant.pk).update(created_at=self._at(self.rng.randint(0, DAYS - 1)))
            if self.rng.random() < 0.7:
                credits_debit(customer=customer, units=self.rng.randint(5, 60), reason="demo usage")

    def _installments(self, merchant) -> None:
        """Orders over the last month and the next: the collector, run for each past day,
        pays them from wallets or cards; declining cards go into dunning, one defaults."""
        customers = list(Customer.objects.filter(merchant=merchant, external_id__startswith=MARKER))
        for i, customer in enumerate(customers):
            customer.payment_method = "mock_card_declined" if i % 4 == 3 else "pm_card_visa"
            customer.save(update_fields=["payment_method"])
            for start in (-32 + 3 * i, -5 + 2 * i):
                installment_order_create(
                    merchant=merchant,
                    customer=customer,
                    amount=self.rng.randint(120, 900) * 100,
                    currency="usd",
                    installment_count=4,
                    interval="week",
                    start_date=self.today + timedelta(days=start),
                    description="demo order",
                )
        for days_ago in range(34, 0, -1):
            when = self._at(days_ago, hour=6)
            before = timezone.now()
            for _ in installments_collect(now=when):
                pass
            made = Charge.objects.filter(created_at__gte=before)
            Payment.objects.filter(pk__in=made.values("payment_id")).update(created_at=when)
            made.update(created_at=when)

    def _webhooks(self, merchant) -> None:
        live = WebhookEndpoint.objects.create(
            merchant=merchant, url="https://hooks.demo-shop.example/paydesk", events=["*"], secret="whsec_demo"
        )
        WebhookEndpoint.objects.create(
            merchant=merchant,
            url="https://old.demo-shop.example/hook",
            events=["*"],
            secret="whsec_demo_old",
            enabled=False,
            disabled_reason="disabled after 50 failures",
        )
        for status in ["retrying"] * 3 + ["failed"] * 2:
            event = OutboundEvent.objects.create(merchant=merchant, type="payment.succeeded", data={"demo": True})
            Delivery.objects.create(
                event=event,
                endpoint=live,
                status=status,
                attempts=4 if status == "retrying" else 12,
                next_attempt_at=self.now + timedelta(minutes=8),
                last_response_code=503,
                last_error="503 Service Unavailable",
            )
        for i, (status, flagged, reason) in enumerate(
            [
                ("failed", False, ""),
                ("processed", True, "payment demo: amount differs from the payment's"),
            ]
        ):
            InboundEvent.objects.create(
                provider="mock",
                event_id=f"evt_demo_inbound_{i}",
                type="payment.succeeded",
                payload={"demo": True},
                raw_body="{}",
                signature_verified=True,
                status=status,
                attempts=3 if status == "failed" else 1,
                last_error="demo: the handler raised" if status == "failed" else "",
                flagged=flagged,
                flag_reason=reason,
            )

    def _periodic_tasks(self) -> None:
        from django_celery_beat.models import PeriodicTask

        for task in PeriodicTask.objects.select_related("interval").filter(interval__isnull=False):
            every = task.interval.schedule.run_every
            # A running beat: each ran within its interval; the installment collector stalled.
            ago = timedelta(minutes=47) if "installments" in task.task else every * self.rng.uniform(0.1, 0.9)
            PeriodicTask.objects.filter(pk=task.pk).update(last_run_at=self.now - ago)
