"""`bench admin-dashboard`: the admin index with the operator dashboard, over a payments
table of `n` rows (1,000,000 by default), as a logged-in staff user sees it.

The payments (and a refund for each refunded one) are inserted set-based, with one
INSERT ... SELECT FROM generate_series, spread over the last 365 days in three
currencies and every status, for one merchant named after `n`: a second run with the
same `n` finds them and only measures. Then each range (today, 7, 30 and 90 days) is
timed for all merchants and for that merchant, through the whole stack (django.test
Client: middleware, session, admin, template), with the page's query count.
"""

import uuid

from django.conf import settings
from django.contrib.auth import get_user_model
from django.db import connection
from django.test import Client, override_settings
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from backoffice import selectors
from config.bench import Timer, check, scenario
from payments.identity.models import Merchant
from payments.identity.services import merchant_create
from payments.models import Payment

RUNS = 7  # timed requests per range and scope, after two unmeasured ones
DAYS = 365

SEED_PAYMENTS = """
INSERT INTO payments_payment (
    id, merchant_id, customer_id, order_id, amount, currency, amount_refunded, provider,
    provider_payment_id, payment_url, client_secret, return_url, status, failure_reason,
    description, metadata, split_instructions, idempotency_key, reconcile_claimed_at,
    created_at, updated_at
)
SELECT
    gen_random_uuid(), %(merchant)s, NULL, 'bench-dash-' || i, p.amount,
    CASE WHEN i %% 10 < 7 THEN 'usd' WHEN i %% 10 < 9 THEN 'eur' ELSE 'jpy' END,
    CASE p.status WHEN 'partially_refunded' THEN p.amount / 2 WHEN 'refunded' THEN p.amount ELSE 0 END,
    'mock', '', '', '', '', p.status,
    CASE WHEN p.status = 'failed'
         THEN (ARRAY['card_declined', 'insufficient_funds', 'expired_card', 'processing_error'])[i %% 4 + 1]
         ELSE '' END,
    '', '{}', '[]', '', NULL, p.created_at, p.created_at
FROM generate_series(1, %(n)s) AS i
CROSS JOIN LATERAL (
    SELECT %(now)s::timestamptz - make_interval(secs => ((i::bigint * 104729) %% (%(days)s * 86400))::double precision)
        AS created_at
) AS t
CROSS JOIN LATERAL (
    SELECT
        t.created_at,
        100 + (i::bigint * 7919) %% 50000 AS amount,
        CASE WHEN i %% 100 < 78 THEN 'succeeded'
             WHEN i %% 100 < 81 THEN 'partially_refunded'
             WHEN i %% 100 < 83 THEN 'refunded'
             WHEN i %% 100 < 91 THEN 'failed'
             WHEN i %% 100 < 94 THEN 'canceled'
             -- pending for a while, then settled or expired by reconciliation (a day at most)
             WHEN i %% 100 < 97 OR t.created_at < %(now)s::timestamptz - interval '2 hours' THEN 'expired'
             ELSE 'pending' END AS status
) AS p
"""

SEED_REFUNDS = """
INSERT INTO payments_refund (
    id, payment_id, amount, wallet_amount, provider_amount, split_returns, claimed_at, status,
    reason, provider_refund_id, failure_reason, idempotency_key, created_at
)
SELECT gen_random_uuid(), id, amount_refunded, 0, amount_refunded, '{}', NULL, 'succeeded',
       'bench', '', '', NULL, LEAST(created_at + interval '1 day', %(now)s::timestamptz)
FROM payments_payment
WHERE merchant_id = %(merchant)s AND amount_refunded > 0
"""


def _seeded_merchant(n: int, out) -> tuple[Merchant, bool]:
    name = f"bench-admin-dashboard-{n}"
    merchant = Merchant.objects.filter(name=name).first()
    if merchant is not None and Payment.objects.filter(merchant=merchant).count() == n:
        out(f"admin-dashboard: reusing the {n:,} payments of {name}")
        return merchant, True
    if merchant is not None:  # a run that died half-way: start it over under a fresh name
        merchant.name = f"{name}-abandoned-{uuid.uuid4().hex[:8]}"
        merchant.save(update_fields=["name"])
    merchant = merchant_create(name=name)
    out(f"admin-dashboard: inserting {n:,} payments for {name} ...")
    params = {"merchant": merchant.pk, "n": n, "now": timezone.now(), "days": DAYS}
    with connection.cursor() as cursor:
        cursor.execute(SEED_PAYMENTS, params)
        cursor.execute(SEED_REFUNDS, params)
        # As autovacuum would soon: statistics for the planner, and the visibility map
        # that lets the dashboard's totals come from the index alone (VACUUM cannot run
        # inside a transaction, as in a test: statistics only, then).
        command = "ANALYZE" if connection.in_atomic_block else "VACUUM (ANALYZE)"
        cursor.execute(f"{command} payments_payment")
        cursor.execute(f"{command} payments_refund")
    return merchant, False


def _check_figures(merchant: Merchant) -> None:
    """The dashboard's figures for the bench merchant against a plain SQL count."""
    d = selectors.dashboard(period="30d", currency="usd", merchant_id=merchant.pk)
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(*), coalesce(sum(amount) FILTER (WHERE status = ANY(%s)), 0) FROM payments_payment "
            "WHERE merchant_id = %s AND currency = 'usd' AND created_at >= %s AND created_at < %s",
            [list(selectors.COLLECTED), merchant.pk, d.window.start, d.window.end],
        )
        count, gross = cursor.fetchone()
    check(d.money_in.count == count, f"dashboard counted {d.money_in.count} payments, SQL {count}")
    check(d.money_in.gross == gross, f"dashboard's gross {d.money_in.gross}, SQL {gross}")


@scenario(
    "admin-dashboard",
    help="The admin index's operator dashboard over N payments (inserted set-based): page time and queries per range.",
    n=1_000_000,
)
def admin_dashboard(*, n: int, out) -> list[dict]:
    if connection.vendor != "postgresql":
        out("admin-dashboard: skipped, it seeds with PostgreSQL's generate_series (set DATABASE_URL)")
        return []
    # The page's static files are not what is measured. With DEBUG off and no collectstatic
    # (a bench database, not a built image), the manifest storage would refuse to name them.
    plain_static = {
        **settings.STORAGES,
        "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
    }
    with override_settings(STORAGES=plain_static):
        return _admin_dashboard(n=n, out=out)


def _admin_dashboard(*, n: int, out) -> list[dict]:
    merchant, reused = _seeded_merchant(n, out)
    _check_figures(merchant)
    user, _ = get_user_model().objects.get_or_create(
        username="bench-admin", defaults={"is_staff": True, "is_superuser": True}
    )
    client = Client()
    client.force_login(user)
    results = []
    for scope, merchant_param in (("all merchants", None), ("one merchant", str(merchant.pk))):
        for period in selectors.PERIODS:
            params = {"period": period, "currency": "usd", **({"merchant": merchant_param} if merchant_param else {})}
            for _ in range(2):
                response = client.get("/admin/", params, secure=True)
                check(response.status_code == 200, f"GET /admin/ {params}: {response.status_code}")
                check(b'id="dashboard"' in response.content, "the page has no dashboard")
            with CaptureQueriesContext(connection) as queries:
                client.get("/admin/", params, secure=True)
            query_count = len(queries)  # now: the next request's request_started empties the log it reads
            timer = Timer()
            for _ in range(RUNS):
                with timer:
                    client.get("/admin/", params, secure=True)
            window = selectors.Window.of(period, now=timezone.now())
            in_range = Payment.objects.filter(created_at__gte=window.start)
            if merchant_param:
                in_range = in_range.filter(merchant=merchant)
            results.append(
                {
                    **timer.result(),
                    "range": period,
                    "scope": scope,
                    "queries": query_count,
                    "payments_in_range": in_range.count(),
                    "payments_total": n,
                    "reused_seed": reused,
                }
            )
    return results
