"""Schedules: exact splits and calendar arithmetic, pure functions.

Months are anchored on the start date's day and clamped to each month's length, so a
schedule from Jan 31 runs Feb 28 (or 29), Mar 31, Apr 30, ... — it never drifts to the
28th the way adding a month to the previous date would.
"""

import calendar
from datetime import date, timedelta

from config.errors import InvalidRequest

MAX_INSTALLMENTS = 120


def add_months(start: date, months: int) -> date:
    month_index = start.month - 1 + months
    year, month = start.year + month_index // 12, month_index % 12 + 1
    return date(year, month, min(start.day, calendar.monthrange(year, month)[1]))


def due_dates(*, start: date, count: int, interval: str, interval_count: int = 1) -> list[date]:
    if interval == "month":
        return [add_months(start, k * interval_count) for k in range(count)]
    step = timedelta(days=7 * interval_count if interval == "week" else interval_count)
    return [start + k * step for k in range(count)]


def split_evenly(amount: int, count: int) -> list[int]:
    """`count` integer parts that sum to `amount` exactly; the remainder goes one unit
    each to the first parts. Every part is at least 1 (else InvalidRequest)."""
    if count < 1 or count > MAX_INSTALLMENTS:
        raise InvalidRequest(f"installment_count must be between 1 and {MAX_INSTALLMENTS}.", param="installment_count")
    if amount < count:
        raise InvalidRequest(
            f"{amount} minor units cannot be split into {count} installments of at least 1.",
            param="installment_count",
        )
    base, remainder = divmod(amount, count)
    return [base + 1 if i < remainder else base for i in range(count)]


def schedule_equal(
    *, amount: int, count: int, interval: str, interval_count: int, start: date
) -> list[tuple[date, int]]:
    return list(
        zip(
            due_dates(start=start, count=count, interval=interval, interval_count=interval_count),
            split_evenly(amount, count),
            strict=True,
        )
    )


def schedule_explicit(*, amount: int, schedule: list[dict]) -> list[tuple[date, int]]:
    """An explicit [{"due_date", "amount"}] list: sums exactly to `amount`, every amount
    at least 1, no date twice. Returned in date order."""
    if not schedule or len(schedule) > MAX_INSTALLMENTS:
        raise InvalidRequest(f"schedule needs 1 to {MAX_INSTALLMENTS} items.", param="schedule")
    total = sum(item["amount"] for item in schedule)
    if total != amount:
        raise InvalidRequest(f"The schedule adds up to {total}, the order is {amount}.", param="schedule")
    dates = [item["due_date"] for item in schedule]
    if len(set(dates)) != len(dates):
        raise InvalidRequest("Two installments fall on the same date.", param="schedule")
    return sorted(((item["due_date"], item["amount"]) for item in schedule), key=lambda pair: pair[0])
