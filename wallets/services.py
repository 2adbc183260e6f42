"""Writes to the ledger, one module per idea, re-exported here so callers import from
one place:

    wallets.ledger     the core: post a batch of postings set-based (every movement)
    wallets.accounts   accounts opened on first use, wallets, merchant balance shards
    wallets.transfers  transfers between any accounts, and reversals
    wallets.moves      customer money in and out of wallets, and the wallet events
    wallets.holds      two-phase holds: reserve, capture, void, expire
    wallets.audit      the ledger audit's recorded runs

Lock order, everywhere: a Transfer row (reversal) or a Hold row first, then accounts by
pk (wallets.ledger.lock, one statement). Nothing locks an account and then a hold or a
transfer, so no two writers deadlock.
"""

from .accounts import (
    account_get_or_create,
    account_open,
    merchant_balance,
    merchant_balance_account,
    merchant_funding_account,
    wallet_create,
)
from .audit import ledger_audit_run
from .holds import hold_capture, hold_create, hold_void, holds_expire
from .ledger import lock
from .moves import wallet_adjust, wallet_credit, wallet_debit, wallet_debits_lock, wallet_debits_many
from .transfers import _reversal_legs, transfer_create, transfer_reverse


def accounts_lock(*, account_ids):
    """Lock every account a transaction is about to post to or release holds on, in pk
    order, before its first ledger write: a transaction that settles several holds or
    transfers takes all its account locks up front, so it cannot deadlock with one that
    takes some of them (re-locking them later in the same transaction is free). Lock any
    Hold or Transfer rows first (the lock order above). Call it inside that transaction.
    Ids, Accounts, wallets.ledger Keys and Pools. Returns the locked rows (wallets.ledger.Locked)."""
    return lock(account_ids)


__all__ = [
    "_reversal_legs",
    "account_get_or_create",
    "account_open",
    "accounts_lock",
    "hold_capture",
    "hold_create",
    "hold_void",
    "holds_expire",
    "ledger_audit_run",
    "merchant_balance",
    "merchant_balance_account",
    "merchant_funding_account",
    "transfer_create",
    "transfer_reverse",
    "wallet_adjust",
    "wallet_create",
    "wallet_credit",
    "wallet_debit",
    "wallet_debits_lock",
    "wallet_debits_many",
]
