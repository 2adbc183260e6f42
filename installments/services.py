"""Writes for installments: create orders, collect due installments, dunning, pay early,
cancel, reschedule.

Lock order, everywhere: the order row, then its installments.

One attempt to collect an installment makes at most one charge, whoever makes it. The
attempt is claimed (status `processing`) in a short transaction that also stores the
idempotency key of that charge on the installment (`charge_key`): `inst:<id>:<attempt>`
when the collector claims it (SKIP LOCKED), `pay:<order>:<n>` for an early payment (one
charge for the installments it pays), `down:<order>` for the down payment. The charge is
made outside any lock with that key, and its outcome recorded in a second short
transaction that checks the installment is still on that key. If the process dies in
between, or the provider cannot be reached and the charge stays pending, the claim's
lease lapses and the collector re-claims the row: it looks the charge up by the stored
key (or makes it, with that same key: charges are idempotent on it) and records the
outcome. A pending charge keeps its installments `processing` until it resolves.

The raw client Idempotency-Key never reaches charge_create: every key is derived in this app
and scoped to one installment attempt or one order.

The writes live in one module per concept; this module re-exports them, so callers keep
importing from `installments.services`:
  installments/orders.py       create (with the down payment), pay early, cancel,
                               reschedule, retry now
  installments/collection.py   claim due installments, collect them (set-based from
                               wallets, else one by one), the chunked run
  installments/bookkeeping.py  book an attempt's outcome (installment_record) through the
                               set-based cores: paid attempts, closing orders
  installments/charging.py     the one charge of an attempt: its amount, its description,
                               making or finding it under the attempt's key
  installments/events.py       timeline rows and outbound event payloads
A test that patches a function patches it where it is called: the module that calls it.
"""

from installments.bookkeeping import OPEN, installment_record, installments_paid, orders_close
from installments.collection import (
    CLAIM_LEASE,
    _collect_from_wallets,
    collection_key,
    installment_collect,
    installments_claim,
    installments_collect,
)
from installments.events import installment_data, order_data
from installments.orders import (
    installment_order_cancel,
    installment_order_create,
    installment_order_pay,
    installment_reschedule,
    installment_retry_now,
    order_remaining,
)

__all__ = [
    "CLAIM_LEASE",
    "OPEN",
    "_collect_from_wallets",
    "collection_key",
    "installment_collect",
    "installment_data",
    "installment_order_cancel",
    "installment_order_create",
    "installment_order_pay",
    "installment_record",
    "installment_reschedule",
    "installment_retry_now",
    "installments_claim",
    "installments_collect",
    "installments_paid",
    "order_data",
    "order_remaining",
    "orders_close",
]
