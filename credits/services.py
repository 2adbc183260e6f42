"""Writes for credits: grants, debits, revocations, expiry, all on the ledger, one module
each (grants.py, debits.py, revocations.py, expiry.py) on the accounts of accounts.py,
which also says how the accounts are sharded and the lock order every write keeps.
Re-exported here, so callers import every credits write from credits.services; those
modules never import this one.
"""

from .accounts import (
    CONSUMED,
    COUNTER_SHARDS,
    EXPIRED,
    ISSUANCE,
    MAX_UNITS,
    MERCHANT_ACCOUNTS,
    counter_account_name,
    counter_shard,
    credit_account_get_or_create,
    credit_counter_accounts,
)
from .debits import credits_debit
from .expiry import credits_expire
from .grants import credits_grant
from .revocations import credits_revoke, credits_revoke_refunded

__all__ = [
    # .accounts
    "CONSUMED",
    "COUNTER_SHARDS",
    "EXPIRED",
    "ISSUANCE",
    "MAX_UNITS",
    "MERCHANT_ACCOUNTS",
    "counter_account_name",
    "counter_shard",
    "credit_account_get_or_create",
    "credit_counter_accounts",
    # .debits
    "credits_debit",
    # .expiry
    "credits_expire",
    # .grants
    "credits_grant",
    # .revocations
    "credits_revoke",
    "credits_revoke_refunded",
]
