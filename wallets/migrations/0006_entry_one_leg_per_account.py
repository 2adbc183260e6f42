"""One leg per account in a transfer (the ledger core merges what it draws from one
account), as a unique constraint whose index also serves lookups by transfer alone: the
transfer_id index it replaces is dropped, and only it. Dropping it through AlterField
would also drop and re-add the foreign key, checking every entry again under lock."""

import django.db.models.deletion
from django.db import migrations, models

TRANSFER_INDEX = "wallets_entry_transfer_id_a90bf50d"  # Django's name for the FK's index


class Migration(migrations.Migration):
    dependencies = [
        ("wallets", "0005_hold_owner"),
    ]

    operations = [
        migrations.AddConstraint(
            model_name="entry",
            constraint=models.UniqueConstraint(fields=("transfer", "account"), name="entry_one_leg_per_account"),
        ),
        migrations.SeparateDatabaseAndState(
            state_operations=[
                migrations.AlterField(
                    model_name="entry",
                    name="transfer",
                    field=models.ForeignKey(
                        db_index=False,
                        on_delete=django.db.models.deletion.PROTECT,
                        related_name="entries",
                        to="wallets.transfer",
                    ),
                ),
            ],
            database_operations=[
                migrations.RunSQL(
                    f'DROP INDEX IF EXISTS "{TRANSFER_INDEX}"',
                    reverse_sql=f'CREATE INDEX "{TRANSFER_INDEX}" ON "wallets_entry" ("transfer_id")',
                ),
            ],
        ),
    ]
