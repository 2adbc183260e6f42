"""The operator dashboard on the admin index: read the selection from the query string
(`?period=7d&currency=eur&merchant=<id>`), ask selectors.dashboard for the figures,
and lay them out as KPI cards and charts, each linking to the admin list it sums,
filtered the same way.

It is rendered by the `{% operator_dashboard %}` tag inside the admin's own index page
(admin.site.index_template, set in apps.py), so login, the staff check and the list of
apps stay Django's.
"""

import uuid
from dataclasses import dataclass
from datetime import timedelta
from urllib.parse import urlencode

from django.urls import reverse
from django.utils import timezone
from django.utils.formats import date_format
from django.utils.timesince import timesince

from config.currencies import is_valid_currency
from config.money_display import money

from . import selectors
from .charts import Bar, Series, bar_chart, compact_money, hbar_chart

PERIOD_LABELS = {"today": "Today", "7d": "7 days", "30d": "30 days", "90d": "90 days"}
REQUIRED_PERMISSION = "payments.view_payment"  # who may see payments may see their totals
CHANGELISTS = {
    "payment": "payments.payment",
    "refund": "payments.refund",
    "charge": "payments.charge",
    "wallet": "wallets.wallet",
    "account": "wallets.account",
    "audit": "wallets.ledgeraudit",
    "creditaccount": "credits.creditaccount",
    "grant": "credits.grant",
    "order": "installments.installmentorder",
    "delivery": "webhooks.delivery",
    "endpoint": "webhooks.webhookendpoint",
    "inbound": "webhooks.inboundevent",
    "task": "django_celery_beat.periodictask",
}
STATUS_LABELS = {
    "pending": "Pending",
    "succeeded": "Succeeded",
    "failed": "Failed",
    "canceled": "Canceled",
    "expired": "Expired",
    "partially_refunded": "Part refunded",
    "refunded": "Refunded",
}


@dataclass
class Card:
    label: str
    value: str
    sub: str = ""
    href: str = ""
    tone: str = ""  # "", "good", "warn" or "bad"


class Links:
    """Admin changelist URLs, with the filters the figure was computed with. A model the
    user may not view gets no link (its list would answer 403)."""

    def __init__(self, user, *, currency: str, merchant_id, window):
        self.user, self.currency, self.merchant_id, self.window = user, currency, merchant_id, window
        # Up to the end of today, not "now": the lists then show what came in since too.
        self.end = selectors.Window.of("today", now=window.end).start + timedelta(days=1)
        # A couple of hundred links to a dozen lists: ask about each list once.
        self._changelists: dict[str, str] = {}

    def to(self, name: str, *, object_id=None, **params) -> str:
        if name not in self._changelists:
            app, model = CHANGELISTS[name].split(".")
            allowed = self.user.has_perm(f"{app}.view_{model}")
            self._changelists[name] = reverse(f"admin:{app}_{model}_changelist") if allowed else ""
        url = self._changelists[name]
        if not url:
            return ""
        if object_id is not None:
            return f"{url}{object_id}/change/"
        params = {k: v for k, v in params.items() if v is not None}
        return f"{url}?{urlencode(params)}" if params else url

    def merchant(self, prefix: str = "") -> dict:
        return {f"{prefix}merchant__id__exact": self.merchant_id} if self.merchant_id else {}

    def window_params(self, field: str = "created_at", start=None, end=None) -> dict:
        start, end = start or self.window.start, end or self.end
        return {f"{field}__gte": start.isoformat(), f"{field}__lt": end.isoformat()}

    def payments(self, *, start=None, end=None, **params) -> str:
        return self.to(
            "payment", currency=self.currency, **self.window_params(start=start, end=end), **self.merchant(), **params
        )

    def refunds(self, *, start=None, end=None) -> str:
        return self.to(
            "refund",
            status="succeeded",
            payment__currency=self.currency,
            **self.window_params(start=start, end=end),
            **self.merchant("payment__"),
        )

    def orders(self, attention: str) -> str:
        return self.to("order", attention=attention, currency=self.currency, **self.merchant())


def _selection(request) -> dict:
    period = request.GET.get("period")
    currency = request.GET.get("currency", "")
    merchant = request.GET.get("merchant", "")
    try:
        merchant_id = uuid.UUID(merchant) if merchant else None
    except ValueError:
        merchant_id = None
    return {
        "period": period if period in selectors.PERIODS else selectors.DEFAULT_PERIOD,
        "currency": currency.lower() if is_valid_currency(currency) else None,
        "merchant_id": merchant_id,
    }


def _count(n: int, noun: str) -> str:
    return f"{n:,} {noun}{'' if n == 1 else 's'}"


def _bucket_label(bucket, window) -> str:
    local = timezone.localtime(bucket)
    return f"{local:%H}:00" if window.bucket == "hour" else date_format(local, "j M")


def _reasons(rows, href) -> list[dict]:
    return [
        {
            "reason": row.reason or "(no reason given)",
            "n": row.n,
            "amount": row.amount,
            "href": href(failure_reason=row.reason),
        }
        for row in rows
    ]


def _money_in(d: selectors.Dashboard, links: Links) -> dict:
    m, c = d.money_in, d.currency
    rate = m.success_rate
    cards = [
        Card(
            "Gross volume",
            money(m.gross, c),
            _count(m.collected_count, "payment") + " collected",
            links.payments(status__in=",".join(selectors.COLLECTED)),
        ),
        Card("Refunds", money(m.refunds, c), _count(m.refund_count, "refund"), links.refunds()),
        Card(
            "Net volume",
            money(m.net, c),
            "gross less refunds",
            links.payments(status__in=",".join(selectors.COLLECTED)),
        ),
        Card("Payments", f"{m.count:,}", "created in the range", links.payments()),
        Card(
            "Success rate",
            "—" if rate is None else f"{rate * 100:.1f}%",
            "collected of those settled (not pending)",
            links.payments(),
            "" if rate is None else ("good" if rate >= 0.9 else "warn" if rate >= 0.7 else "bad"),
        ),
    ]
    failed = m.by_status["failed"]
    labels = [_bucket_label(b, d.window) for b, _, _ in m.volume]
    step = timedelta(hours=1) if d.window.bucket == "hour" else timedelta(days=1)
    volume = bar_chart(
        title="Volume collected and refunded",
        labels=labels,
        axis_label=compact_money(c),
        series=[
            Series(
                "Collected",
                "pd-collected",
                [
                    Bar(
                        collected,
                        links.payments(start=b, end=b + step, status__in=",".join(selectors.COLLECTED)),
                        f"{label}: {money(collected, c)} collected",
                    )
                    for (b, collected, _), label in zip(m.volume, labels, strict=True)
                ],
            ),
            Series(
                "Refunded",
                "pd-refunded",
                [
                    Bar(refunded, links.refunds(start=b, end=b + step), f"{label}: {money(refunded, c)} refunded")
                    for (b, _, refunded), label in zip(m.volume, labels, strict=True)
                ],
            ),
        ],
    )
    statuses = hbar_chart(
        title="Payments by status",
        css_class="pd-status",
        value_label=lambda v: f"{v:,}",
        bars=[
            (
                STATUS_LABELS[s],
                Bar(
                    m.by_status[s].n,
                    links.payments(status=s),
                    f"{STATUS_LABELS[s]}: {m.by_status[s].n:,} ({money(m.by_status[s].amount, c)})",
                ),
            )
            for s in selectors.STATUSES
        ],
    )
    return {
        "cards": cards,
        "volume_chart": volume,
        "status_chart": statuses,
        "by_status": [
            {
                "label": STATUS_LABELS[s],
                "n": m.by_status[s].n,
                "amount": m.by_status[s].amount,
                "href": links.payments(status=s),
            }
            for s in selectors.STATUSES
        ],
        "failed": Card(
            "Failed payments",
            f"{failed.n:,}",
            money(failed.amount, c),
            links.payments(status="failed"),
            "warn" if failed.n else "",
        ),
        "failed_reasons": _reasons(m.failed_reasons, lambda **p: links.payments(status="failed", **p)),
        "declined": Card(
            "Declined charges",
            f"{m.declined.n:,}",
            money(m.declined.amount, c),
            links.to("charge", status="failed", currency=c, **links.window_params(), **links.merchant()),
            "warn" if m.declined.n else "",
        ),
        "declined_reasons": _reasons(
            m.declined_reasons,
            lambda **p: links.to(
                "charge", status="failed", currency=c, **links.window_params(), **links.merchant(), **p
            ),
        ),
    }


def _money_held(d: selectors.Dashboard, links: Links) -> list[Card]:
    h, c = d.money_held, d.currency
    return [
        Card(
            "Customer wallets",
            money(h.wallets, c),
            f"owed to customers, {_count(h.wallet_count, 'wallet')}",
            links.to("wallet", currency=c, **links.merchant()),
        ),
        Card(
            "Held",
            money(h.held, c),
            "reserved by pending holds",
            links.to("account", currency=c, held__gt=0, **links.merchant()),
        ),
        Card(
            "Merchant balances",
            money(h.merchant_balances, c),
            "owed to merchants",
            links.to("account", kind="merchant_balance", currency=c, **links.merchant()),
        ),
        Card(
            "Credits outstanding",
            f"{h.credits_outstanding:,}",
            "prepaid units not yet used (all currencies)",
            links.to("creditaccount", balance__gt=0, **links.merchant()),
        ),
        Card(
            "Credits sold",
            f"{h.credits_sold:,}",
            f"units in {_count(h.credit_grants_sold, 'purchase')} in the range",
            links.to("grant", source__in=",".join(selectors.CREDITS_SOLD), **links.window_params(), **links.merchant()),
        ),
    ]


def _installments(d: selectors.Dashboard, links: Links) -> dict:
    i, c = d.installments, d.currency
    cards = [
        Card(
            "Due today",
            money(i.due_today.amount, c),
            _count(i.due_today.n, "installment") + " still to collect",
            links.orders("due_today"),
        ),
        Card(
            "Overdue",
            money(i.overdue.amount, c),
            _count(i.overdue.n, "installment"),
            links.orders("overdue"),
            "warn" if i.overdue.n else "",
        ),
        Card(
            "Failing (dunning)",
            money(i.failing.amount, c),
            _count(i.failing.n, "installment") + " being retried",
            links.orders("failing"),
            "warn" if i.failing.n else "",
        ),
        Card(
            "Defaulted",
            money(i.defaulted.amount, c),
            f"unpaid, {_count(i.defaulted_orders, 'order')}",
            links.orders("defaulted"),
            "bad" if i.defaulted_orders else "",
        ),
        Card(
            f"Expected, next {selectors.EXPECTED_DAYS} days",
            money(i.expected.amount, c),
            _count(i.expected.n, "installment"),
            links.orders("due_soon"),
        ),
    ]
    last_day = d.today + timedelta(days=selectors.EXPECTED_DAYS - 1)
    labels = []
    for start, _ in i.forecast:
        end = min(start + timedelta(days=6), last_day)
        labels.append(f"{date_format(start, 'j M')}–{date_format(end, 'j M')}")
    chart = bar_chart(
        title=f"Installments falling due, next {selectors.EXPECTED_DAYS} days",
        width=880,
        labels=labels,
        axis_label=compact_money(c),
        show_values=lambda v: money(v, c) if v else "",
        series=[
            Series(
                "Due",
                "pd-forecast",
                [
                    Bar(amount, links.orders("due_soon"), f"{label}: {money(amount, c)} due")
                    for (_, amount), label in zip(i.forecast, labels, strict=True)
                ],
            )
        ],
    )
    rows = [
        {"label": label, "amount": amount, "href": links.orders("due_soon")}
        for (_, amount), label in zip(i.forecast, labels, strict=True)
    ]
    return {"cards": cards, "forecast_chart": chart, "forecast_rows": rows, "expected": i.expected}


def _every(every: timedelta) -> str:
    seconds = int(every.total_seconds())
    if seconds == 3600:
        return "hourly"
    for unit, name in ((86400, "day"), (3600, "h"), (60, "min")):
        if seconds % unit == 0:
            return f"every {seconds // unit} {name}{'s' if name == 'day' and seconds > unit else ''}"
    return f"every {seconds} s"


def _ago(moment, *, now) -> str:
    if moment is None:
        return "never"
    return "under a minute ago" if now - moment < timedelta(minutes=1) else f"{timesince(moment, now)} ago"


def _health(d: selectors.Dashboard, links: Links) -> dict:
    h = d.health
    audit = h.last_audit
    minutes = int((d.window.end - h.stuck_before).total_seconds() // 60)
    cards = [
        Card(
            "Deliveries retrying",
            f"{h.deliveries_retrying:,}",
            "webhooks to merchants, backing off",
            links.to("delivery", status="retrying"),
            "warn" if h.deliveries_retrying else "good",
        ),
        Card(
            "Deliveries failed",
            f"{h.deliveries_failed:,}",
            "dead-lettered: replay from admin",
            links.to("delivery", status="failed"),
            "bad" if h.deliveries_failed else "good",
        ),
        Card(
            "Endpoints disabled",
            f"{h.endpoints_disabled:,}",
            "merchant webhook URLs",
            links.to("endpoint", enabled__exact=0, deleted_at__isnull="True"),
            "warn" if h.endpoints_disabled else "good",
        ),
        Card(
            "Inbound events failed",
            f"{h.inbound_failed:,}",
            "provider events not processed",
            links.to("inbound", status="failed"),
            "bad" if h.inbound_failed else "good",
        ),
        Card(
            "Inbound events flagged",
            f"{h.inbound_flagged:,}",
            "for staff to look at, in the range",
            links.to("inbound", flagged__exact=1, **links.window_params("received_at")),
            "warn" if h.inbound_flagged else "good",
        ),
        Card(
            "Stuck pending",
            f"{h.stuck_pending:,}",
            f"payments pending over {minutes} min",
            links.to("payment", status="pending", created_at__lt=h.stuck_before.isoformat()),
            "warn" if h.stuck_pending else "good",
        ),
        Card(
            "Last ledger audit",
            "never run" if audit is None else ("clean" if audit.ok else "FAILED"),
            "" if audit is None else date_format(timezone.localtime(audit.started_at), "j M Y, H:i"),
            links.to("audit", object_id=audit.pk) if audit else links.to("audit"),
            "warn" if audit is None else ("good" if audit.ok else "bad"),
        ),
    ]
    tasks = [
        {
            "name": t.name,
            "schedule": _every(t.every) if t.every else t.schedule,
            "last_run": _ago(t.last_run_at, now=d.window.end),
            "due_at": t.due_at,
            "state": "disabled" if not t.enabled else ("overdue" if t.overdue else "ok"),
            "href": links.to("task", object_id=t.id),
        }
        for t in h.tasks
    ]
    return {"cards": cards, "tasks": tasks, "tasks_overdue": h.tasks_overdue}


def _query(selection: dict, **change) -> str:
    params = {**selection, **change}
    return "?" + urlencode({k: v for k, v in params.items() if v})


def dashboard_context(request, *, now=None) -> dict:
    """What backoffice/dashboard.html needs; {"allowed": False} for staff who may not view payments."""
    if not request.user.has_perm(REQUIRED_PERMISSION):
        return {"allowed": False}
    chosen = _selection(request)
    d = selectors.dashboard(**chosen, now=now)
    links = Links(request.user, currency=d.currency, merchant_id=d.merchant.pk if d.merchant else None, window=d.window)
    selection = {
        "period": d.window.period,
        "currency": d.currency,
        "merchant": str(d.merchant.pk) if d.merchant else "",
    }
    local_end = timezone.localtime(d.window.end)
    return {
        "allowed": True,
        "d": d,
        "selection": selection,
        "periods": [
            {"key": key, "label": label, "href": _query(selection, period=key), "active": key == d.window.period}
            for key, label in PERIOD_LABELS.items()
        ],
        "range_label": f"{date_format(d.window.start, 'j M Y')} – {date_format(local_end, 'j M Y, H:i')}",
        "money_in": _money_in(d, links),
        "money_held": _money_held(d, links),
        "installments": _installments(d, links),
        "health": _health(d, links),
    }
