"""Entries are append-only in the database too: on PostgreSQL a trigger refuses any
UPDATE or DELETE of a row of wallets_entry, whatever client issues it."""

from django.db import migrations

FORWARD = """
CREATE OR REPLACE FUNCTION wallets_entry_append_only() RETURNS trigger AS $$
BEGIN
    RAISE EXCEPTION 'wallets_entry is append-only: % refused', TG_OP
        USING ERRCODE = 'raise_exception';
END;
$$ LANGUAGE plpgsql;

CREATE TRIGGER wallets_entry_append_only
    BEFORE UPDATE OR DELETE ON wallets_entry
    FOR EACH ROW EXECUTE FUNCTION wallets_entry_append_only();
"""

BACKWARD = """
DROP TRIGGER IF EXISTS wallets_entry_append_only ON wallets_entry;
DROP FUNCTION IF EXISTS wallets_entry_append_only();
"""


def forward(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(FORWARD, params=None)


def backward(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(BACKWARD, params=None)


class Migration(migrations.Migration):
    dependencies = [("wallets", "0001_initial")]

    operations = [migrations.RunPython(forward, backward)]
