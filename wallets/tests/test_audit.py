import logging

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import connection

from wallets.ledger import Posting, post
from wallets.models import Account, Entry, Hold, LedgerAudit, Transfer
from wallets.selectors import ledger_audit
from wallets.services import (
    account_get_or_create,
    hold_capture,
    hold_create,
    merchant_balance_account,
    transfer_create,
    transfer_reverse,
)
from wallets.tests.factories import WalletFactory

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("shards")]


def _scenario(customer) -> Account:
    wallet = WalletFactory(customer=customer, balance=1000)
    dest = merchant_balance_account(merchant=customer.merchant, currency="usd")
    t = transfer_create(legs=[(wallet, -300), (dest, 300)], currency="usd")
    transfer_reverse(transfer=t, amount=100)
    hold_capture(hold=hold_create(account=wallet, amount=200), amount=50)
    hold_create(account=wallet, amount=10)
    return wallet


def _pk(obj):
    return obj.pk.hex if connection.vendor == "sqlite" else obj.pk


def _corrupt(sql: str, params) -> None:
    with connection.cursor() as cursor:
        cursor.execute(sql, params)


def test_audit_passes_on_a_consistent_ledger(customer):
    _scenario(customer)
    report = ledger_audit()
    assert report["ok"], report
    assert report["totals"]["entries"] > 0
    assert report["totals"]["pending_holds"] == 1


@pytest.mark.corrupts_ledger
def test_audit_catches_a_corrupted_cached_balance(customer):
    wallet = _scenario(customer)
    _corrupt("UPDATE wallets_account SET balance = balance + 1 WHERE id = %s", [_pk(wallet)])

    report = ledger_audit()

    assert not report["ok"]
    assert [v["account"] for v in report["violations"]["balance_not_sum_of_entries"]] == [str(wallet.pk)]
    assert report["violations"]["currency_sum_not_zero"] == [{"currency": "usd", "sum": 1}]
    assert report["violations"]["balance_not_last_balance_after"]


@pytest.mark.corrupts_ledger
def test_audit_catches_held_out_of_step_with_pending_holds(customer):
    wallet = _scenario(customer)
    Hold.objects.filter(account=wallet, status="pending").update(status="voided")  # held not released
    report = ledger_audit()
    assert [v["account"] for v in report["violations"]["held_not_sum_of_pending_holds"]] == [str(wallet.pk)]


@pytest.mark.postgres
@pytest.mark.corrupts_ledger
def test_audit_catches_a_negative_no_overdraft_account(customer):
    wallet = _scenario(customer)
    # The CHECK constraints make this impossible; drop them inside the test's transaction
    # (rolled back after it) to prove the audit is a second, independent line.
    _corrupt("SET CONSTRAINTS ALL IMMEDIATE", [])  # flush deferred FK checks so ALTER may run
    _corrupt("ALTER TABLE wallets_account DROP CONSTRAINT account_balance_not_negative", [])
    _corrupt("ALTER TABLE wallets_account DROP CONSTRAINT account_available_not_negative", [])
    _corrupt("UPDATE wallets_account SET balance = -5 WHERE id = %s", [_pk(wallet)])
    report = ledger_audit()
    assert [v["account"] for v in report["violations"]["negative_balance"]] == [str(wallet.pk)]


def _failing(report) -> set[str]:
    return {check for check, rows in report["violations"].items() if rows}


@pytest.mark.postgres
@pytest.mark.corrupts_ledger
def test_audit_catches_a_corrupted_balance_after_in_the_middle_of_the_history(customer):
    wallet = _scenario(customer)
    entries = list(Entry.objects.filter(account=wallet).order_by("id"))
    assert len(entries) >= 4
    middle = entries[len(entries) // 2]
    # The last balance_after and the cached balance stay right: only a history check sees this.
    _corrupt("SET CONSTRAINTS ALL IMMEDIATE", [])  # flush deferred checks so ALTER may run
    _corrupt("ALTER TABLE wallets_entry DISABLE TRIGGER wallets_entry_append_only", [])
    _corrupt("UPDATE wallets_entry SET balance_after = balance_after + 7 WHERE id = %s", [middle.pk])

    report = ledger_audit()

    assert _failing(report) == {"balance_after_not_running_sum"}
    assert report["violations"]["balance_after_not_running_sum"] == [
        {
            "entry": middle.pk,
            "account": str(wallet.pk),
            "balance_after": middle.balance_after + 7,
            "running_sum": middle.balance_after,
        }
    ]


def _fake_reversal(original, legs):
    """A balanced transfer that claims to reverse `original`, written below transfer_reverse."""
    [posted] = post([Posting(legs=legs, currency="usd", kind=Transfer.Kind.REVERSAL, reverses_id=original.pk)])
    return posted.transfer


@pytest.fixture
def split(customer):
    wallet = WalletFactory(customer=customer, balance=1000)
    merchant = merchant_balance_account(merchant=customer.merchant, currency="usd")
    platform = account_get_or_create(kind=Account.Kind.PLATFORM, currency="usd")
    original = transfer_create(legs=[(wallet, -100), (merchant, 90), (platform, 10)], currency="usd")
    return original, wallet, merchant, platform


@pytest.mark.corrupts_ledger
@pytest.mark.parametrize(
    "legs",
    [
        pytest.param(lambda w, m, p, other: [(m, -40), (other, 40)], id="an account the original never touched"),
        pytest.param(lambda w, m, p, other: [(w, -40), (m, 40)], id="same direction as the original"),
        pytest.param(lambda w, m, p, other: [(w, 50), (m, -40), (p, -10)], id="not scaled: half back, all of 10"),
    ],
)
def test_audit_catches_a_reversal_that_does_not_mirror_its_original(split, customer, legs):
    original, wallet, merchant, platform = split
    other = account_get_or_create(kind=Account.Kind.RECIPIENT, merchant=customer.merchant, currency="usd", name="x")
    _fake_reversal(original, legs(wallet, merchant, platform, other))

    report = ledger_audit()

    assert "reversal_not_mirrored" in _failing(report)
    assert _failing(report) <= {"reversal_not_mirrored", "reversed_beyond_leg"}
    assert {row["original"] for row in report["violations"]["reversal_not_mirrored"]} == {str(original.pk)}


@pytest.mark.corrupts_ledger
def test_audit_catches_reversals_that_together_take_back_more_than_a_leg(split):
    original, wallet, merchant, platform = split
    transfer_create(legs=[(wallet, -50), (platform, 50)], currency="usd")  # so the platform can pay back
    # Each reversal of 20 is within rounding of its share (18 and 2), but three of them
    # take 12 back from the platform's leg of 10.
    for _ in range(3):
        _fake_reversal(original, [(wallet, 20), (merchant, -16), (platform, -4)])

    report = ledger_audit()

    assert _failing(report) == {"reversed_beyond_leg"}
    assert report["violations"]["reversed_beyond_leg"] == [
        {"original": str(original.pk), "account": str(platform.pk), "leg": 10, "reversed": -12}
    ]


def test_command_prints_ok_and_records_the_run(customer, capsys):
    _scenario(customer)
    call_command("audit_ledger")
    assert "OK" in capsys.readouterr().out
    assert LedgerAudit.objects.get().ok


@pytest.mark.corrupts_ledger
def test_command_exits_non_zero_on_a_violation(customer, capsys):
    wallet = _scenario(customer)
    _corrupt("UPDATE wallets_account SET balance = balance - 1 WHERE id = %s", [_pk(wallet)])
    with pytest.raises(CommandError) as exc:
        call_command("audit_ledger")
    assert exc.value.returncode == 1
    assert "balance_not_sum_of_entries" in capsys.readouterr().err
    assert not LedgerAudit.objects.get().ok


@pytest.mark.corrupts_ledger
def test_periodic_task_records_a_failure_and_logs_an_error(customer, caplog):
    from wallets.tasks import ledger_audit_task

    wallet = _scenario(customer)
    _corrupt("UPDATE wallets_account SET balance = balance + 5 WHERE id = %s", [_pk(wallet)])
    with caplog.at_level(logging.ERROR, logger="paydesk.wallets"):
        result = ledger_audit_task.delay().get()
    assert result["ok"] is False
    assert LedgerAudit.objects.get(pk=result["audit"]).ok is False
    assert any("ledger audit FAILED" in r.getMessage() for r in caplog.records)


def test_periodic_tasks_are_registered():
    from config.periodic import registered

    tasks = {spec.task for spec in registered()}
    assert {"wallets.tasks.ledger_audit_task", "wallets.tasks.holds_expire_task"} <= tasks


@pytest.mark.postgres
def test_the_reversal_checks_never_look_a_leg_up_by_its_account(customer):
    """A reversal's legs and its original's are read by transfer and met by grouping.
    Joined on (transfer, account), with statistics taken while the ledger was small
    (autovacuum lags behind growth), the planner found the original's leg by reading
    its account's every entry, once per reversal leg: an audit of a busy wallet with
    many refunds ran for minutes (300 reversals of a 30,000-transfer ledger: 0.3 s)."""
    from wallets.selectors import _rows

    with connection.cursor() as cursor:
        cursor.execute("ANALYZE wallets_account, wallets_transfer, wallets_entry")  # all empty now
    wallet = WalletFactory(customer=customer, balance=10_000)
    dest = merchant_balance_account(merchant=customer.merchant, currency="usd")
    debits = [transfer_create(legs=[(wallet, -1), (dest, 1)], currency="usd") for _ in range(300)]
    for debit in debits[:30]:
        transfer_reverse(transfer=debit)
    plans = []

    def explained(sql, params=()):
        if "reverses_id" in sql:
            with connection.cursor() as cursor:
                cursor.execute("EXPLAIN (FORMAT JSON) " + sql, params)
                plans.append(cursor.fetchone()[0][0]["Plan"])
        return _rows(sql, params)

    with connection.cursor() as cursor:
        # Nested loops only, as statistics that make every table look tiny lead to: then
        # each join's inner side is an index probe on what the SQL joins it by.
        cursor.execute("SET LOCAL enable_hashjoin = off; SET LOCAL enable_mergejoin = off")
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr("wallets.selectors._rows", explained)
        assert ledger_audit()["ok"]
    assert len(plans) == 3
    by_account = [
        n
        for plan in plans
        for n in _nodes(plan)
        if n.get("Relation Name") == "wallets_entry"
        and any("account_id =" in n.get(c, "") for c in ("Index Cond", "Recheck Cond", "Filter"))
    ]
    assert by_account == []


def _nodes(node):
    yield node
    for child in node.get("Plans", ()):
        yield from _nodes(child)
