import pytest
from hypothesis import given
from hypothesis import strategies as st

from config.errors import InvalidRequest
from payments.splits import splits_allocate, splits_validate


def test_fixed_and_bps_parts_with_remainder_to_the_first():
    instructions = splits_validate(
        instructions=[
            {"destination": "a", "bps": 3333},
            {"destination": "b", "bps": 3333},
            {"destination": "c", "bps": 3334},
        ],
        amount=100,
    )
    assert splits_allocate(instructions=instructions, amount=100) == [("a", 34), ("b", 33), ("c", 33)]
    mixed = splits_validate(
        instructions=[{"destination": "fee", "amount": 7}, {"destination": "x", "bps": 5000}], amount=101
    )
    assert splits_allocate(instructions=mixed, amount=101) == [("fee", 7), ("x", 50)]


@pytest.mark.parametrize(
    "instructions,param",
    [
        ([{"destination": "a", "amount": 1001}], "split_instructions"),
        ([{"destination": "a", "bps": 6000}, {"destination": "b", "bps": 5000}], "split_instructions"),
        ([{"destination": "a", "amount": 900}, {"destination": "b", "bps": 2000}], "split_instructions"),
        ([{"destination": "a", "amount": 1, "bps": 1}], "split_instructions[0]"),
        ([{"destination": "", "amount": 1}], "split_instructions[0].destination"),
        ([{"destination": "x" * 101, "amount": 1}], "split_instructions[0].destination"),
        ([{"destination": "a", "amount": 1}, {"destination": " a ", "bps": 1}], "split_instructions[1].destination"),
        ([{"destination": "a", "amount": 1.5}], "split_instructions[0].amount"),
        ([{"destination": "a", "bps": 0}], "split_instructions[0].bps"),
        ("nope", "split_instructions"),
    ],
)
def test_invalid_splits_name_the_param(instructions, param):
    with pytest.raises(InvalidRequest) as exc:
        splits_validate(instructions=instructions, amount=1000)
    assert exc.value.param == param


@given(
    amount=st.integers(min_value=1, max_value=10**12),
    bps=st.lists(st.integers(min_value=1, max_value=2500), min_size=1, max_size=4),
)
def test_allocation_is_exact_and_never_exceeds_the_amount(amount, bps):
    instructions = [{"destination": f"d{i}", "bps": b} for i, b in enumerate(bps)]
    parts = splits_allocate(instructions=instructions, amount=amount)
    assert sum(p for _, p in parts) == amount * sum(bps) // 10_000 <= amount
    assert all(isinstance(p, int) and p >= 0 for _, p in parts)


@given(
    amount=st.integers(min_value=1, max_value=10**9),
    shares=st.lists(st.integers(min_value=1, max_value=10**8), min_size=1, max_size=6),
    fraction=st.fractions(min_value=0, max_value=1),
)
def test_split_returns_are_exact_and_never_more_than_a_share(amount, shares, fraction):
    from payments.booking import split_returns

    if sum(shares) > amount:
        shares = [1] * min(len(shares), amount)
    refunded = int(amount * fraction)
    back = split_returns(shares=shares, amount=amount, refunded=refunded)
    assert sum(back) == sum(shares) * refunded // amount
    assert all(0 <= b <= s for b, s in zip(back, shares, strict=True))
    assert split_returns(shares=shares, amount=amount, refunded=amount) == shares
    assert split_returns(shares=shares, amount=amount, refunded=0) == [0] * len(shares)
