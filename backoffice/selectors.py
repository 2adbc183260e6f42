"""What the operator dashboard shows: every figure an SQL aggregate (COUNT/SUM ... GROUP
BY), never rows summed in Python, in a fixed handful of queries whatever the data.

The payment and refund totals of the chosen range are read once for every currency
(that is also how the currency selector knows which currencies there are); the rest is
asked for the chosen currency only. What grows with the business is the rows inside the
range: the payments' totals are an index-only scan of payment_created_covering_idx, the
rest reads through the created_at and status indexes. The current-state figures
(balances, installments, the health of deliveries and events) are one aggregate each.
All of it is read in one read-only snapshot, so the figures agree with each other.

Amounts are integers in the currency's minor units, as everywhere else.
"""

from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta

from django.conf import settings
from django.db import connection, transaction
from django.db.models import Count, OuterRef, Q, Subquery, Sum
from django.db.models.functions import Trunc
from django.utils import timezone

from config.periodic import periodic_tasks_overdue
from credits.models import Grant
from installments.models import Installment
from payments.models import Charge, Merchant, Payment, Refund
from wallets.models import CREDITS_UNIT, Account, LedgerAudit
from webhooks.models import Delivery, InboundEvent, WebhookEndpoint

PERIODS = {"today": 1, "7d": 7, "30d": 30, "90d": 90}
DEFAULT_PERIOD = "30d"

STATUSES = [s.value for s in Payment.Status]
# Collected, whatever was refunded of it later: gross volume counts these.
COLLECTED = ("succeeded", "partially_refunded", "refunded")
OPEN_INSTALLMENT = ("scheduled", "processing", "failed")
CREDITS_SOLD = (Grant.Source.STRIPE_CHECKOUT, Grant.Source.STRIPE_INVOICE)
TOP_REASONS = 5
EXPECTED_DAYS = 30
FORECAST_WEEKS = -(-EXPECTED_DAYS // 7)  # weeks from today; the last one ends with the 30 days


@dataclass(frozen=True)
class Window:
    """The chosen range: from local midnight `days - 1` days ago until `end` (now),
    in hourly buckets for today and daily ones otherwise."""

    period: str
    start: datetime
    end: datetime
    bucket: str

    @classmethod
    def of(cls, period: str, *, now: datetime) -> "Window":
        days = PERIODS[period]
        first = timezone.localtime(now).date() - timedelta(days=days - 1)
        start = timezone.make_aware(datetime.combine(first, time.min))
        return cls(period=period, start=start, end=now, bucket="hour" if days == 1 else "day")

    def buckets(self) -> list[datetime]:
        if self.bucket == "hour":
            hours = int((self.end - self.start).total_seconds() // 3600) + 1
            return [self.start + timedelta(hours=h) for h in range(hours)]
        first, last = self.start.date(), timezone.localtime(self.end).date()
        return [
            timezone.make_aware(datetime.combine(first + timedelta(days=d), time.min))
            for d in range((last - first).days + 1)
        ]

    def filter(self, field_name: str) -> dict:
        return {f"{field_name}__gte": self.start, f"{field_name}__lt": self.end}


@dataclass
class Total:
    n: int = 0
    amount: int = 0


@dataclass
class Reason:
    reason: str
    n: int
    amount: int


@dataclass
class MoneyIn:
    gross: int = 0
    refunds: int = 0
    refund_count: int = 0
    by_status: dict[str, Total] = field(default_factory=lambda: {s: Total() for s in STATUSES})
    volume: list[tuple[datetime, int, int]] = field(default_factory=list)  # (bucket, collected, refunded)
    failed_reasons: list[Reason] = field(default_factory=list)
    declined: Total = field(default_factory=Total)
    declined_reasons: list[Reason] = field(default_factory=list)

    @property
    def net(self) -> int:
        return self.gross - self.refunds

    @property
    def count(self) -> int:
        return sum(c.n for c in self.by_status.values())

    @property
    def collected_count(self) -> int:
        return sum(self.by_status[s].n for s in COLLECTED)

    @property
    def success_rate(self) -> float | None:
        """Collected payments out of those that reached an outcome (pending ones have not)."""
        settled = self.count - self.by_status["pending"].n
        return self.collected_count / settled if settled else None


@dataclass
class MoneyHeld:
    wallets: int = 0
    wallet_count: int = 0
    held: int = 0
    merchant_balances: int = 0
    credits_outstanding: int = 0
    credits_sold: int = 0
    credit_grants_sold: int = 0


@dataclass
class Installments:
    due_today: Total
    overdue: Total
    failing: Total
    defaulted: Total
    defaulted_orders: int
    expected: Total  # due in the next EXPECTED_DAYS days, today included
    forecast: list[tuple[date, int]]  # (first day of the week, amount due that week)


@dataclass
class TaskState:
    id: int
    name: str
    enabled: bool
    schedule: str
    every: timedelta | None  # interval schedules
    last_run_at: datetime | None
    due_at: datetime | None
    overdue: bool


@dataclass
class Health:
    deliveries_retrying: int
    deliveries_failed: int
    endpoints_disabled: int
    inbound_failed: int
    inbound_flagged: int  # flagged among the events received in the range
    stuck_pending: int
    stuck_before: datetime
    last_audit: LedgerAudit | None
    tasks: list[TaskState]

    @property
    def tasks_overdue(self) -> int:
        return sum(t.overdue for t in self.tasks)


@dataclass
class Dashboard:
    window: Window
    today: date
    currency: str
    currencies: list[str]
    merchant: Merchant | None
    merchants: list[tuple]
    money_in: MoneyIn
    money_held: MoneyHeld
    installments: Installments
    health: Health


def _merchant_q(prefix: str, merchant_id) -> dict:
    return {f"{prefix}merchant_id": merchant_id} if merchant_id else {}


def payment_totals(*, window: Window, merchant_id=None) -> dict[tuple[str, datetime, str], Total]:
    """Payments created in the window: (currency, bucket, status) → count and amount. One query."""
    rows = (
        Payment.objects.filter(**window.filter("created_at"), **_merchant_q("", merchant_id))
        .annotate(bucket=Trunc("created_at", window.bucket))
        .values_list("currency", "bucket", "status")
        # COUNT(*), not COUNT(id): every column read is in payment_created_covering_idx, so
        # PostgreSQL answers from the index alone.
        .annotate(n=Count("*"), amount=Sum("amount"))
        .order_by()
    )
    return {(c, b, s): Total(n, amount) for c, b, s, n, amount in rows}


def refund_totals(*, window: Window, merchant_id=None) -> dict[tuple[str, datetime], Total]:
    """Refunds that succeeded, made in the window (whenever their payment was): (currency,
    bucket) → count and amount. One query.

    Each refund looks up its payment's currency (and merchant) by primary key: a join
    would have PostgreSQL hash the whole payments table to match a few thousand refunds.
    """
    payment = Payment.objects.filter(pk=OuterRef("payment_id"), **_merchant_q("", merchant_id)).order_by()
    rows = (
        Refund.objects.filter(status=Refund.Status.SUCCEEDED, **window.filter("created_at"))
        .annotate(currency=Subquery(payment.values("currency")[:1]), bucket=Trunc("created_at", window.bucket))
        .values_list("currency", "bucket")
        .annotate(n=Count("*"), amount=Sum("amount"))
        .order_by()
    )
    # No currency: another merchant's refund, when one merchant is chosen (dropped here, not
    # in SQL, where the lookup would be written, and costed, twice).
    return {(c, b): Total(n, amount) for c, b, n, amount in rows if c is not None}


def _reasons(queryset) -> list[Reason]:
    rows = (
        queryset.values_list("failure_reason")
        .annotate(n=Count("pk"), amount=Sum("amount"))
        .order_by("-n", "failure_reason")[:TOP_REASONS]
    )
    return [Reason(reason, n, amount) for reason, n, amount in rows]


def failed_payments(*, window: Window, currency: str, merchant_id=None):
    return Payment.objects.filter(
        status=Payment.Status.FAILED, currency=currency, **window.filter("created_at"), **_merchant_q("", merchant_id)
    )


def declined_charges(*, window: Window, currency: str, merchant_id=None):
    """Charges whose card part was refused (or never confirmed): the wallet part was given
    back, and the charge's payment failed with it."""
    return Charge.objects.filter(
        status=Charge.Status.FAILED, currency=currency, **window.filter("created_at"), **_merchant_q("", merchant_id)
    )


def money_in(*, window: Window, currency: str, merchant_id, payments: dict, refunds: dict) -> MoneyIn:
    """Money in for one currency, from the all-currency totals plus three queries (the
    top failure reasons, and the declined charges' total and top reasons)."""
    figures = MoneyIn()
    collected: dict[datetime, int] = {}
    refunded: dict[datetime, int] = {}
    for (c, bucket, status), total in payments.items():
        if c != currency:
            continue
        figures.by_status[status].n += total.n
        figures.by_status[status].amount += total.amount
        if status in COLLECTED:
            figures.gross += total.amount
            collected[bucket] = collected.get(bucket, 0) + total.amount
    for (c, bucket), total in refunds.items():
        if c == currency:
            figures.refunds += total.amount
            figures.refund_count += total.n
            refunded[bucket] = refunded.get(bucket, 0) + total.amount
    figures.volume = [(b, collected.get(b, 0), refunded.get(b, 0)) for b in window.buckets()]
    scope = {"window": window, "currency": currency, "merchant_id": merchant_id}
    figures.failed_reasons = _reasons(failed_payments(**scope))
    declined = declined_charges(**scope)
    total = declined.aggregate(n=Count("pk"), amount=Sum("amount"))
    figures.declined = Total(total["n"], total["amount"] or 0)
    figures.declined_reasons = _reasons(declined) if total["n"] else []
    return figures


def balances(*, merchant_id=None) -> dict[tuple[str, str], tuple[int, int, int]]:
    """Every ledger account's cached balance, summed: (currency, kind) → (balance, held,
    accounts). One query; balances are kept on the account row, so no entry is read."""
    rows = (
        Account.objects.filter(**_merchant_q("", merchant_id))
        .values_list("currency", "kind")
        .annotate(balance=Sum("balance"), held=Sum("held"), n=Count("pk"))
        .order_by()
    )
    return {(c, k): (balance, held, n) for c, k, balance, held, n in rows}


def money_held(*, window: Window, currency: str, merchant_id, accounts: dict) -> MoneyHeld:
    figures = MoneyHeld()
    for (c, kind), (balance, held, n) in accounts.items():
        if c == currency:
            figures.held += held
            if kind == Account.Kind.CUSTOMER_WALLET:
                figures.wallets += balance
                figures.wallet_count += n
            elif kind == Account.Kind.MERCHANT_BALANCE:
                figures.merchant_balances += balance
        elif c == CREDITS_UNIT and kind == Account.Kind.CREDITS:
            figures.credits_outstanding += balance
    sold = credit_grants_sold(window=window, merchant_id=merchant_id).aggregate(n=Count("pk"), units=Sum("units"))
    figures.credit_grants_sold, figures.credits_sold = sold["n"], sold["units"] or 0
    return figures


def credit_grants_sold(*, window: Window, merchant_id=None):
    """Credits bought through Stripe (Checkout or an invoice) in the window."""
    return Grant.objects.filter(source__in=CREDITS_SOLD, **window.filter("created_at"), **_merchant_q("", merchant_id))


def installments(*, currency: str, merchant_id=None, today: date) -> Installments:
    """Installments of the currency's orders as they stand today. Two queries: the
    counts, and what falls due in each week of the next EXPECTED_DAYS days."""
    scope = Installment.objects.filter(order__currency=currency, **_merchant_q("order__", merchant_id))
    horizon = today + timedelta(days=EXPECTED_DAYS)
    kinds = {
        "due_today": Q(status__in=OPEN_INSTALLMENT, due_date=today),
        "overdue": Q(status__in=["scheduled", "failed"], due_date__lt=today, order__status="active"),
        "failing": Q(status="failed", order__status="active"),
        "defaulted": Q(status="defaulted"),
        "expected": Q(status__in=OPEN_INSTALLMENT, due_date__gte=today, due_date__lt=horizon),
    }
    aggregates = {}
    for name, condition in kinds.items():
        aggregates[f"{name}_n"] = Count("pk", filter=condition)
        aggregates[f"{name}_amount"] = Sum("amount", filter=condition)
    aggregates["defaulted_orders"] = Count("order", distinct=True, filter=Q(order__status="defaulted"))
    row = scope.filter(status__in=[*OPEN_INSTALLMENT, "defaulted"]).aggregate(**aggregates)

    weeks = [today + timedelta(days=7 * w) for w in range(FORECAST_WEEKS)]
    due = (
        scope.filter(status__in=OPEN_INSTALLMENT, due_date__gte=today, due_date__lt=horizon)
        .values_list("due_date")
        .annotate(amount=Sum("amount"))
        .order_by()
    )
    by_week = dict.fromkeys(weeks, 0)
    for day, amount in due:
        by_week[weeks[(day - today).days // 7]] += amount
    return Installments(
        **{name: Total(row[f"{name}_n"], row[f"{name}_amount"] or 0) for name in kinds},
        defaulted_orders=row["defaulted_orders"],
        forecast=list(by_week.items()),
    )


def _task_state(task, *, now: datetime, overdue: set[str]) -> TaskState:
    """When the task should next run, and whether it is late for it: beat treats a task
    that never ran as last run when it was last changed (date_changed)."""
    reference = task.last_run_at or task.date_changed
    due_at = None
    if task.enabled and not (task.one_off and task.total_run_count):
        if task.interval_id:
            due_at = reference + task.interval.schedule.run_every
        elif task.clocked_id:
            due_at = task.clocked.clocked_time
        elif task.crontab_id:
            start, delta, _ = task.crontab.schedule.remaining_delta(reference)
            due_at = start + delta  # the first time the crontab matches after `reference`
        elif task.solar_id:
            schedule = task.solar.schedule
            due_at = schedule.now() + schedule.remaining_estimate(reference)
        if task.start_time and due_at and due_at < task.start_time:
            due_at = task.start_time
    return TaskState(
        id=task.pk,
        name=task.name,
        enabled=task.enabled,
        schedule=str(task.scheduler or ""),
        every=task.interval.schedule.run_every if task.interval_id else None,
        last_run_at=task.last_run_at,
        due_at=due_at,
        overdue=task.name in overdue,
    )


def periodic_tasks(*, now: datetime) -> list[TaskState]:
    from django_celery_beat.models import PeriodicTask

    # Late is config.periodic's one rule (twice the interval), as /healthz says it.
    overdue = {task.name for task in periodic_tasks_overdue(now=now)}
    rows = PeriodicTask.objects.select_related("interval", "crontab", "solar", "clocked").order_by("name")
    return [_task_state(task, now=now, overdue=overdue) for task in rows]


def health(*, window: Window, now: datetime) -> Health:
    """The platform's health, all merchants and currencies: six queries."""
    deliveries = Delivery.objects.filter(status__in=["retrying", "failed"]).aggregate(
        retrying=Count("pk", filter=Q(status="retrying")), failed=Count("pk", filter=Q(status="failed"))
    )
    inbound = InboundEvent.objects.filter(Q(status="failed") | Q(flagged=True, **window.filter("received_at")))
    inbound = inbound.aggregate(
        failed=Count("pk", filter=Q(status="failed")),
        flagged=Count("pk", filter=Q(flagged=True, **window.filter("received_at"))),
    )
    stuck_before = now - timedelta(seconds=settings.PAYMENT_RECONCILE_AFTER_SECONDS)
    return Health(
        deliveries_retrying=deliveries["retrying"],
        deliveries_failed=deliveries["failed"],
        endpoints_disabled=WebhookEndpoint.objects.filter(enabled=False, deleted_at__isnull=True).count(),
        inbound_failed=inbound["failed"],
        inbound_flagged=inbound["flagged"],
        stuck_pending=Payment.objects.filter(status="pending", created_at__lt=stuck_before).count(),
        stuck_before=stuck_before,
        last_audit=LedgerAudit.objects.defer("report").order_by("-started_at").first(),
        tasks=periodic_tasks(now=now),
    )


def _merchant_choices(chosen: Merchant | None, limit: int = 500) -> list[tuple]:
    """(id, name) for the merchant selector: the first `limit` by name, and the chosen one."""
    choices = list(Merchant.objects.order_by("name").values_list("pk", "name")[:limit])
    if chosen is not None and chosen.pk not in {pk for pk, _ in choices}:
        choices.append((chosen.pk, chosen.name))
    return choices


def _currencies(payments: dict, refunds: dict, accounts: dict) -> tuple[list[str], str | None]:
    """Every currency with payments or refunds in the range or a ledger account, and the
    one with the most payments in the range (None when the range has none)."""
    counts: dict[str, int] = {}
    for (c, _, _), total in payments.items():
        counts[c] = counts.get(c, 0) + total.n
    known = set(counts) | {c for c, _ in refunds} | {c for c, _ in accounts if c != CREDITS_UNIT}
    busiest = max(sorted(counts), key=lambda c: counts[c]) if counts else None
    return sorted(known), busiest


@contextmanager
def _one_snapshot():
    """Read every figure from one snapshot, so the page's figures agree with each other,
    read-only. And without JIT: PostgreSQL compiles a query it costs high, which takes
    longer (hundreds of ms) than running these aggregates does."""
    outermost = not connection.in_atomic_block  # inside another transaction, take it as it is
    with transaction.atomic():
        if connection.vendor == "postgresql":
            snapshot = "SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY; " if outermost else ""
            with connection.cursor() as cursor:
                cursor.execute(snapshot + "SET LOCAL jit = off")
        yield


def dashboard(*, period: str = DEFAULT_PERIOD, currency: str | None = None, merchant_id=None, now=None) -> Dashboard:
    """Everything on the dashboard, for one currency (the busiest of the range unless
    named) and optionally one merchant, over `period` (a PERIODS key)."""
    with _one_snapshot():
        return _dashboard(period=period, currency=currency, merchant_id=merchant_id, now=now)


def _dashboard(*, period: str, currency: str | None, merchant_id, now) -> Dashboard:
    now = now or timezone.now()
    window = Window.of(period, now=now)
    merchant = Merchant.objects.filter(pk=merchant_id).first() if merchant_id else None
    merchant_id = merchant.pk if merchant else None
    payments = payment_totals(window=window, merchant_id=merchant_id)
    refunds = refund_totals(window=window, merchant_id=merchant_id)
    accounts = balances(merchant_id=merchant_id)
    currencies, busiest = _currencies(payments, refunds, accounts)
    currency = (currency or busiest or (currencies[0] if currencies else "usd")).lower()
    if currency not in currencies:
        currencies = sorted({*currencies, currency})
    scope = {"window": window, "currency": currency, "merchant_id": merchant_id}
    return Dashboard(
        window=window,
        today=timezone.localtime(now).date(),
        currency=currency,
        currencies=currencies,
        merchant=merchant,
        merchants=_merchant_choices(merchant),
        money_in=money_in(**scope, payments=payments, refunds=refunds),
        money_held=money_held(**scope, accounts=accounts),
        installments=installments(currency=currency, merchant_id=merchant_id, today=timezone.localtime(now).date()),
        health=health(window=window, now=now),
    )
