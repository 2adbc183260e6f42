"""Property test: random sequences of credits, debits, wallet-to-wallet transfers, holds,
captures, voids and reversals, against a plain Python model of the ledger. After every
step the service must have done exactly what the model predicts (or refused with the
predicted error) and the full ledger audit must pass.

Each example runs in its own transaction that is rolled back at the end, so examples
do not see each other's rows (the customers and wallets made once per test are kept).
"""

import pytest
from django.db import transaction
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from config.errors import Conflict, IllegalTransition, InsufficientFunds, InvalidRequest
from wallets.models import Account, Hold, Transfer
from wallets.selectors import ledger_audit, ledger_audit_format
from wallets.services import (
    hold_capture,
    hold_create,
    hold_void,
    merchant_balance_account,
    merchant_funding_account,
    transfer_create,
    transfer_reverse,
    wallet_create,
    wallet_credit,
    wallet_debit,
)

pytestmark = pytest.mark.django_db

amounts = st.integers(min_value=1, max_value=500)
index = st.integers(min_value=0, max_value=20)
wallet_no = st.integers(min_value=0, max_value=1)
operations = st.lists(
    st.one_of(
        st.tuples(st.just("credit"), wallet_no, amounts),
        st.tuples(st.just("debit"), wallet_no, amounts),
        st.tuples(st.just("move"), wallet_no, amounts),
        st.tuples(st.just("hold"), wallet_no, amounts),
        st.tuples(st.just("capture"), index, st.one_of(st.none(), st.integers(min_value=1, max_value=600))),
        st.tuples(st.just("void"), index, st.none()),
        st.tuples(st.just("reverse"), index, st.one_of(st.none(), st.integers(min_value=1, max_value=600))),
    ),
    min_size=1,
    max_size=25,
)


class Rollback(Exception):
    pass


class Model:
    """What the ledger should look like: balances, held, holds and transfers."""

    def __init__(self, funding, merchant, wallets):
        self.funding, self.merchant, self.wallets = funding, merchant, wallets
        self.balance = {a.pk: 0 for a in (funding, merchant, *wallets)}
        self.held = dict.fromkeys(self.balance, 0)
        self.holds = []  # [hold, status]
        self.transfers = []  # {"obj", "legs": {pk: amount}, "amount", "reversed", "is_reversal"}

    def available(self, pk):
        return self.balance[pk] - self.held[pk]

    def predict_legs(self, legs: dict):
        """The error a transfer with these legs must raise, or None."""
        for pk, delta in legs.items():
            if delta < 0 and pk != self.funding.pk and self.balance[pk] + delta - self.held[pk] < 0:
                return InsufficientFunds
        return None

    def apply(self, legs: dict, transfer, *, is_reversal=False, original=None, amount):
        for pk, delta in legs.items():
            self.balance[pk] += delta
        self.transfers.append(
            {"obj": transfer, "legs": legs, "amount": amount, "reversed": 0, "is_reversal": is_reversal}
        )
        if original is not None:
            original["reversed"] += amount


def run(model: Model, op):
    """Run one operation; return (expected error or None, callable performing it, on_success)."""
    kind, a, b = op
    if kind in ("credit", "debit", "move", "hold"):
        wallet = Account.objects.get(pk=model.wallets[a].pk)
    if kind == "credit":
        legs = {model.funding.pk: -b, wallet.pk: b}
        return (
            model.predict_legs(legs),
            lambda: wallet_credit(wallet=wallet, amount=b),
            lambda t: model.apply(legs, t, amount=b),
        )
    if kind == "debit":
        legs = {wallet.pk: -b, model.merchant.pk: b}
        return (
            model.predict_legs(legs),
            lambda: wallet_debit(wallet=wallet, amount=b),
            lambda t: model.apply(legs, t, amount=b),
        )
    if kind == "move":
        other = Account.objects.get(pk=model.wallets[1 - a].pk)
        legs = {wallet.pk: -b, other.pk: b}
        return (
            model.predict_legs(legs),
            lambda: transfer_create(legs=[(wallet, -b), (other, b)], currency="usd"),
            lambda t: model.apply(legs, t, amount=b),
        )
    if kind == "hold":
        expected = InsufficientFunds if model.available(wallet.pk) < b else None

        def held(hold):
            model.held[wallet.pk] += b
            model.holds.append([hold, "pending"])

        return expected, lambda: hold_create(account=wallet, amount=b), held
    if kind in ("capture", "void"):
        if not model.holds:
            return None, None, None
        entry = model.holds[a % len(model.holds)]
        hold = Hold.objects.get(pk=entry[0].pk)
        if entry[1] != "pending":
            return (
                IllegalTransition,
                (lambda: hold_capture(hold=hold, amount=b)) if kind == "capture" else (lambda: hold_void(hold=hold)),
                None,
            )
        pk = hold.account_id
        if kind == "void":

            def voided(_):
                model.held[pk] -= hold.amount
                entry[1] = "voided"

            return None, lambda: hold_void(hold=hold), voided
        amount = hold.amount if b is None else b
        if amount > hold.amount:
            return InvalidRequest, lambda: hold_capture(hold=hold, amount=b), None

        def captured(result):
            model.held[pk] -= hold.amount
            entry[1] = "captured"
            model.apply({pk: -amount, model.merchant.pk: amount}, result.capture_transfer, amount=amount)

        return None, lambda: hold_capture(hold=hold, amount=b), captured
    if kind == "reverse":
        if not model.transfers:
            return None, None, None
        original = model.transfers[a % len(model.transfers)]
        do = lambda: transfer_reverse(transfer=original["obj"], amount=b)  # noqa: E731
        if original["is_reversal"]:
            return InvalidRequest, do, None
        remaining = original["amount"] - original["reversed"]
        if remaining <= 0:
            return Conflict, do, None
        amount = remaining if b is None else b
        if amount > remaining:
            return InvalidRequest, do, None
        legs = {pk: (amount if delta < 0 else -amount) for pk, delta in original["legs"].items()}
        return (
            model.predict_legs(legs),
            do,
            lambda t: model.apply(legs, t, is_reversal=True, original=original, amount=amount),
        )
    raise AssertionError(kind)


def check_invariants(model: Model):
    for pk in model.balance:
        account = Account.objects.get(pk=pk)
        assert (account.balance, account.held) == (model.balance[pk], model.held[pk]), account
        if not account.allow_negative:
            assert account.balance - account.held >= 0
    report = ledger_audit()
    assert report["ok"], ledger_audit_format(report)
    assert Transfer.objects.count() == len(model.transfers)


@pytest.fixture
def accounts(customer):
    from payments.tests.factories import CustomerFactory

    wallets = [wallet_create(customer=customer, currency="usd")]
    wallets.append(wallet_create(customer=CustomerFactory(merchant=customer.merchant), currency="usd"))
    funding = merchant_funding_account(merchant=customer.merchant, currency="usd")
    merchant = merchant_balance_account(merchant=customer.merchant, currency="usd")
    return funding, merchant, wallets


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(ops=operations)
def test_random_operations_keep_every_invariant(accounts, ops):
    funding, merchant, wallets = accounts
    try:
        with transaction.atomic():
            model = Model(funding, merchant, wallets)
            for op in ops:
                expected, perform, on_success = run(model, op)
                if perform is None:
                    continue
                if expected is None:
                    result = perform()
                    on_success(result)
                else:
                    with pytest.raises(expected):
                        with transaction.atomic():
                            perform()
                check_invariants(model)
            raise Rollback
    except Rollback:
        pass
    assert not Transfer.objects.exists()  # the example's rows are gone
