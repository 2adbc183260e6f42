"""Writes for identity: merchants, API keys, subscriptions, customers."""

import calendar
import hashlib
import secrets
from datetime import UTC, datetime, timedelta
from functools import cache

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.validators import validate_email
from django.db import IntegrityError, connection, transaction
from django.db.models import F
from django.utils import timezone

from config.errors import Conflict, QuotaExceeded

from .key_cache import api_key_cache
from .models import ApiKey, Customer, Merchant, Subscription

KEY_PREFIXES = {False: "pd_test_", True: "pd_live_"}


def hash_api_key(raw_key: str) -> str:
    return hashlib.sha256(raw_key.encode()).hexdigest()


def month_period(now: datetime) -> tuple[datetime, datetime]:
    """The calendar month (UTC) containing `now`, as [start, end)."""
    now = now.astimezone(UTC)
    start = now.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    days = calendar.monthrange(start.year, start.month)[1]
    return start, start + timedelta(days=days)


@transaction.atomic
def merchant_create(*, name: str, region=None, category=None, quota: int | None = None) -> Merchant:
    """Create a merchant on the default plan (DEFAULT_PAYMENT_QUOTA creations a month)."""
    merchant = Merchant.objects.create(name=name, region=region, category=category)
    subscription_create(merchant=merchant, quota=quota)
    return merchant


def subscription_create(*, merchant: Merchant, quota: int | None = None, plan: str = "default") -> Subscription:
    """Start the merchant's plan now with a full quota for the current calendar month."""
    quota = settings.DEFAULT_PAYMENT_QUOTA if quota is None else quota
    start, end = month_period(timezone.now())
    return Subscription.objects.create(
        merchant=merchant, plan=plan, quota=quota, tokens_remaining=quota, period_start=start, period_end=end
    )


def merchant_get_or_create(*, name: str, **kwargs) -> tuple[Merchant, bool]:
    merchant = Merchant.objects.filter(name=name).first()
    if merchant:
        return merchant, False
    try:
        return merchant_create(name=name, **kwargs), True
    except IntegrityError:  # created concurrently
        return Merchant.objects.get(name=name), False


def api_key_create(
    *, merchant: Merchant, livemode: bool = False, name: str = "", raw_key: str | None = None
) -> tuple[ApiKey, str]:
    """Create a key and return it with its only plaintext copy. Store nothing but the hash.

    `raw_key` lets `seed` install its deterministic demo key; everything else leaves it None.
    """
    raw_key = raw_key or KEY_PREFIXES[livemode] + secrets.token_urlsafe(24)
    api_key = ApiKey.objects.create(
        merchant=merchant, name=name, livemode=livemode, prefix=raw_key[:12], key_hash=hash_api_key(raw_key)
    )
    return api_key, raw_key


def api_key_revoke(*, api_key: ApiKey) -> ApiKey:
    """Revoke the key: refused at once by this process, by every other web process within
    API_KEY_CACHE_SECONDS (key_cache)."""
    ApiKey.objects.filter(pk=api_key.pk, revoked_at__isnull=True).update(revoked_at=timezone.now())
    api_key_cache.forget(key_hash=api_key.key_hash)
    api_key.refresh_from_db()
    return api_key


LAST_USED_RESOLUTION = timedelta(minutes=1)


def api_key_touch(*, api_key: ApiKey, now: datetime | None = None) -> bool:
    """Record use, at most once a minute per key: a write per request would make every
    read a write on one hot row. Returns whether it wrote."""
    now = now or timezone.now()
    if api_key.last_used_at is None or now - api_key.last_used_at >= LAST_USED_RESOLUTION:
        ApiKey.objects.filter(pk=api_key.pk).update(last_used_at=now)
        api_key.last_used_at = now
        return True
    return False


def subscription_consume_token(*, merchant: Merchant, now: datetime | None = None) -> None:
    """Take one payment-creation token, atomically, in the caller's transaction.

    One conditional UPDATE, which also starts the new period when the current one has
    ended (a full quota, minus this token): creations never depend on the hourly renewal
    task having run, so they keep working with no beat at all. Concurrent creates can
    never take more than the quota: PostgreSQL re-checks the WHERE clause on the row as
    the previous writer left it, so after one of them rolls the period over, the others
    take from the new period's tokens. Raises QuotaExceeded when none is left.
    """
    now = now or timezone.now()
    start, end = month_period(now)
    at, start, end = (_PERIOD_FIELD.get_db_prep_value(moment, connection) for moment in (now, start, end))
    merchant_id = _MERCHANT_FIELD.get_db_prep_value(merchant.pk, connection)
    with connection.cursor() as cursor:
        cursor.execute(_consume_token_sql(connection.vendor), [at, at, start, at, end, merchant_id, at, at])
        taken = cursor.rowcount
    if not taken:
        raise QuotaExceeded()


_PERIOD_FIELD = Subscription._meta.get_field("period_end")
_MERCHANT_FIELD = Subscription._meta.get_field("merchant")


@cache
def _consume_token_sql(vendor: str) -> str:
    """subscription_consume_token's UPDATE, written once: the ORM's Case/When version cost
    more CPU to compile on every create than PostgreSQL spent running it. Every
    right-hand side reads the row as it was (SQL's UPDATE semantics), so `period_end`
    in each CASE is the old period's end."""
    quote = connection.ops.quote_name
    table = quote(Subscription._meta.db_table)
    ended = "period_end <= %s"
    return (
        f"UPDATE {table} SET "
        f"tokens_remaining = CASE WHEN {ended} THEN quota - 1 ELSE tokens_remaining - 1 END, "
        f"period_start = CASE WHEN {ended} THEN %s ELSE period_start END, "
        f"period_end = CASE WHEN {ended} THEN %s ELSE period_end END "
        f"WHERE merchant_id = %s AND ((period_end > %s AND tokens_remaining > 0) OR ({ended} AND quota > 0))"
    )


def subscriptions_renew(*, now: datetime | None = None) -> int:
    """Start a new period, with a full quota, for every subscription whose period ended.

    Safe to run twice or concurrently: the UPDATE only matches ended periods.
    """
    now = now or timezone.now()
    start, end = month_period(now)
    return Subscription.objects.filter(period_end__lte=now).update(
        tokens_remaining=F("quota"), period_start=start, period_end=end
    )


def customer_create(*, merchant: Merchant, external_id: str, email: str = "", name: str = "") -> Customer:
    """Raises Conflict if the merchant already has a customer with this external_id."""
    try:
        with transaction.atomic():
            return Customer.objects.create(merchant=merchant, external_id=external_id, email=email, name=name)
    except IntegrityError:
        raise Conflict(f"A customer with external_id {external_id!r} already exists.", param="external_id")


def customer_get_or_create_by_external_id(
    *, merchant: Merchant, external_id: str, email: str = "", name: str = ""
) -> tuple[Customer, bool]:
    """The merchant's customer with this external_id, created with `email` and `name` if
    there is none yet (an end user seen for the first time). Returns (customer, created).

    Concurrent first calls make one customer: the unique (merchant, external_id)
    constraint decides, and each loser reads the winner's row. An existing customer's
    email and name are left as they are. An email that is not one is not stored."""
    customer = Customer.objects.select_related("merchant").filter(merchant=merchant, external_id=external_id).first()
    if customer is not None:
        return customer, False
    try:
        validate_email(email)
        if len(email) > Customer._meta.get_field("email").max_length:
            raise ValidationError("too long")
    except ValidationError:
        email = ""
    try:
        with transaction.atomic():
            customer = Customer.objects.create(merchant=merchant, external_id=external_id, email=email, name=name[:255])
        return customer, True
    except IntegrityError:
        return Customer.objects.select_related("merchant").get(merchant=merchant, external_id=external_id), False
