"""Transfers are append-only in the database too, the ledger cannot be truncated table by
table, and every transfer balances at commit. PostgreSQL only (SQLite has the ORM guards).

- wallets_transfer: DELETE refused; UPDATE refused if it changes what moved (amount,
  currency, kind, merchant, reverses, idempotency key, creator, time). The reference and
  description are labels and may be corrected.
- TRUNCATE of wallets_entry or wallets_transfer is refused unless the same statement
  empties the whole ledger (accounts, transfers, entries, holds: what `manage.py flush`
  and the test runner do), which leaves it consistent. TRUNCATE locks every table it
  names before these triggers fire, so the locks this session holds tell which it empties.
- A DEFERRABLE INITIALLY DEFERRED constraint trigger on inserts into wallets_transfer and
  wallets_entry checks at commit that the transfer has at least two entries summing to
  zero whose positive legs add up to its amount.
"""

from django.db import migrations

FORWARD = """
CREATE OR REPLACE FUNCTION wallets_transfer_append_only() RETURNS trigger AS $$
BEGIN
    IF TG_OP = 'DELETE' THEN
        RAISE EXCEPTION 'wallets_transfer is append-only: DELETE refused' USING ERRCODE = 'raise_exception';
    END IF;
    IF (NEW.id, NEW.amount, NEW.currency, NEW.kind, NEW.merchant_id, NEW.reverses_id, NEW.idempotency_key,
        NEW.created_by_id, NEW.created_at)
       IS DISTINCT FROM
       (OLD.id, OLD.amount, OLD.currency, OLD.kind, OLD.merchant_id, OLD.reverses_id, OLD.idempotency_key,
        OLD.created_by_id, OLD.created_at) THEN
        RAISE EXCEPTION 'wallets_transfer is append-only: UPDATE of what a transfer moved refused'
            USING ERRCODE = 'raise_exception';
    END IF;
    RETURN NEW;
END;
$$ LANGUAGE plpgsql;

CREATE TRIGGER wallets_transfer_append_only
    BEFORE UPDATE OR DELETE ON wallets_transfer
    FOR EACH ROW EXECUTE FUNCTION wallets_transfer_append_only();

CREATE OR REPLACE FUNCTION wallets_ledger_no_partial_truncate() RETURNS trigger AS $$
BEGIN
    IF (SELECT count(DISTINCT relation) FROM pg_locks
        WHERE pid = pg_backend_pid() AND locktype = 'relation' AND mode = 'AccessExclusiveLock' AND granted
          AND relation IN ('wallets_account'::regclass, 'wallets_transfer'::regclass,
                           'wallets_entry'::regclass, 'wallets_hold'::regclass)) = 4 THEN
        RETURN NULL;
    END IF;
    RAISE EXCEPTION '% is append-only: TRUNCATE refused (only the whole ledger may be emptied at once)',
        TG_TABLE_NAME USING ERRCODE = 'raise_exception';
END;
$$ LANGUAGE plpgsql;

CREATE TRIGGER wallets_entry_no_partial_truncate
    BEFORE TRUNCATE ON wallets_entry
    FOR EACH STATEMENT EXECUTE FUNCTION wallets_ledger_no_partial_truncate();
CREATE TRIGGER wallets_transfer_no_partial_truncate
    BEFORE TRUNCATE ON wallets_transfer
    FOR EACH STATEMENT EXECUTE FUNCTION wallets_ledger_no_partial_truncate();

CREATE OR REPLACE FUNCTION wallets_transfer_check_balanced(transfer uuid) RETURNS void AS $$
DECLARE
    legs bigint;
    total numeric;
    moved numeric;
    declared bigint;
BEGIN
    SELECT count(*), COALESCE(sum(amount), 0), COALESCE(sum(amount) FILTER (WHERE amount > 0), 0)
        INTO legs, total, moved FROM wallets_entry WHERE transfer_id = transfer;
    SELECT amount INTO declared FROM wallets_transfer WHERE id = transfer;
    IF legs < 2 OR total <> 0 OR moved IS DISTINCT FROM declared THEN
        RAISE EXCEPTION 'transfer % does not balance: % entries summing to %, moving % of its amount %',
            transfer, legs, total, moved, declared USING ERRCODE = 'check_violation';
    END IF;
END;
$$ LANGUAGE plpgsql;

CREATE OR REPLACE FUNCTION wallets_transfer_balanced() RETURNS trigger AS $$
BEGIN
    PERFORM wallets_transfer_check_balanced(NEW.id);
    RETURN NULL;
END;
$$ LANGUAGE plpgsql;

CREATE OR REPLACE FUNCTION wallets_entry_transfer_balanced() RETURNS trigger AS $$
BEGIN
    PERFORM wallets_transfer_check_balanced(NEW.transfer_id);
    RETURN NULL;
END;
$$ LANGUAGE plpgsql;

CREATE CONSTRAINT TRIGGER wallets_transfer_balanced
    AFTER INSERT ON wallets_transfer DEFERRABLE INITIALLY DEFERRED
    FOR EACH ROW EXECUTE FUNCTION wallets_transfer_balanced();
CREATE CONSTRAINT TRIGGER wallets_entry_transfer_balanced
    AFTER INSERT ON wallets_entry DEFERRABLE INITIALLY DEFERRED
    FOR EACH ROW EXECUTE FUNCTION wallets_entry_transfer_balanced();
"""

BACKWARD = """
DROP TRIGGER IF EXISTS wallets_entry_transfer_balanced ON wallets_entry;
DROP TRIGGER IF EXISTS wallets_transfer_balanced ON wallets_transfer;
DROP FUNCTION IF EXISTS wallets_entry_transfer_balanced();
DROP FUNCTION IF EXISTS wallets_transfer_balanced();
DROP FUNCTION IF EXISTS wallets_transfer_check_balanced(uuid);
DROP TRIGGER IF EXISTS wallets_transfer_no_partial_truncate ON wallets_transfer;
DROP TRIGGER IF EXISTS wallets_entry_no_partial_truncate ON wallets_entry;
DROP FUNCTION IF EXISTS wallets_ledger_no_partial_truncate();
DROP TRIGGER IF EXISTS wallets_transfer_append_only ON wallets_transfer;
DROP FUNCTION IF EXISTS wallets_transfer_append_only();
"""


def forward(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(FORWARD, params=None)


def backward(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(BACKWARD, params=None)


class Migration(migrations.Migration):
    dependencies = [("wallets", "0003_admin_action_permissions")]

    operations = [migrations.RunPython(forward, backward)]
