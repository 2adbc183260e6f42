from datetime import date

import pytest
from hypothesis import given
from hypothesis import strategies as st

from config.errors import InvalidRequest
from installments.schedule import add_months, due_dates, schedule_explicit, split_evenly


def test_month_end_dates_clamp_and_come_back():
    assert due_dates(start=date(2027, 1, 31), count=4, interval="month") == [
        date(2027, 1, 31),
        date(2027, 2, 28),
        date(2027, 3, 31),
        date(2027, 4, 30),
    ]
    assert add_months(date(2028, 1, 31), 1) == date(2028, 2, 29)  # leap year
    assert add_months(date(2026, 11, 30), 3) == date(2027, 2, 28)


def test_weeks_days_and_interval_count():
    assert due_dates(start=date(2027, 1, 1), count=3, interval="week", interval_count=2) == [
        date(2027, 1, 1),
        date(2027, 1, 15),
        date(2027, 1, 29),
    ]
    assert due_dates(start=date(2027, 12, 30), count=3, interval="day", interval_count=1)[-1] == date(2028, 1, 1)
    assert due_dates(start=date(2027, 1, 31), count=2, interval="month", interval_count=3)[1] == date(2027, 4, 30)


def test_odd_amounts_split_exactly_remainder_first():
    assert split_evenly(1000, 3) == [334, 333, 333]
    assert split_evenly(7, 7) == [1] * 7
    with pytest.raises(InvalidRequest) as exc:
        split_evenly(5, 6)  # each installment must be at least one minor unit
    assert exc.value.param == "installment_count"


@given(amount=st.integers(min_value=1, max_value=10**12), count=st.integers(min_value=1, max_value=120))
def test_split_always_sums_and_differs_by_at_most_one(amount, count):
    if amount < count:
        return
    parts = split_evenly(amount, count)
    assert sum(parts) == amount and max(parts) - min(parts) <= 1 and parts == sorted(parts, reverse=True)


def test_explicit_schedule_must_sum_and_not_repeat_dates():
    items = [{"due_date": date(2027, 2, 1), "amount": 600}, {"due_date": date(2027, 1, 1), "amount": 400}]
    assert schedule_explicit(amount=1000, schedule=items) == [(date(2027, 1, 1), 400), (date(2027, 2, 1), 600)]
    with pytest.raises(InvalidRequest) as exc:
        schedule_explicit(amount=999, schedule=items)
    assert exc.value.param == "schedule"
    with pytest.raises(InvalidRequest):
        schedule_explicit(amount=1000, schedule=[{"due_date": date(2027, 1, 1), "amount": 500}] * 2)
