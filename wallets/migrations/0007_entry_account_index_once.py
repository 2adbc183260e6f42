"""An entry's account was indexed twice: by the foreign key's own index and by
entry_account_newest (account, -id), which serves every lookup by account as well. Every
ledger write kept both. Only the foreign key's index goes (as in 0006, without
AlterField's drop and re-add of the key itself)."""

import django.db.models.deletion
from django.db import migrations, models

ACCOUNT_INDEX = "wallets_entry_account_id_8b96ee76"  # Django's name for the FK's index


class Migration(migrations.Migration):
    dependencies = [
        ("wallets", "0006_entry_one_leg_per_account"),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            state_operations=[
                migrations.AlterField(
                    model_name="entry",
                    name="account",
                    field=models.ForeignKey(
                        db_index=False,
                        on_delete=django.db.models.deletion.PROTECT,
                        related_name="entries",
                        to="wallets.account",
                    ),
                ),
            ],
            database_operations=[
                migrations.RunSQL(
                    f'DROP INDEX IF EXISTS "{ACCOUNT_INDEX}"',
                    reverse_sql=f'CREATE INDEX "{ACCOUNT_INDEX}" ON "wallets_entry" ("account_id")',
                ),
            ],
        ),
    ]
