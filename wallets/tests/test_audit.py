import logging

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import connection

from wallets.models import Account, Hold, LedgerAudit
from wallets.selectors import ledger_audit
from wallets.services import hold_capture, hold_create, merchant_balance_account, transfer_create, transfer_reverse
from wallets.tests.factories import WalletFactory

pytestmark = pytest.mark.django_db


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
