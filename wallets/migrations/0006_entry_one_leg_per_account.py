"""One leg per account in a transfer (the ledger core merges what it draws from one
account), as a unique constraint; and each of an entry's foreign keys indexed once.

- entry_one_leg_per_account (transfer, account) serves a lookup by transfer alone: the
  transfer foreign key's own index goes.
- entry_account_newest (account, -id) serves every lookup by account: the account
  foreign key's own index goes. Every ledger write kept both.

Only the indexes go: AlterField(db_index=False) would also drop and re-add each foreign
key, which checks every entry again under lock."""

import django.db.models.deletion
from django.db import migrations, models


def _drop_fk_index(name: str, to: str, index: str) -> migrations.SeparateDatabaseAndState:
    """Entry.<name> without its own index, dropping only `index` (Django's name for it)."""
    column = f"{name}_id"
    return migrations.SeparateDatabaseAndState(
        state_operations=[
            migrations.AlterField(
                model_name="entry",
                name=name,
                field=models.ForeignKey(
                    db_index=False, on_delete=django.db.models.deletion.PROTECT, related_name="entries", to=to
                ),
            ),
        ],
        database_operations=[
            migrations.RunSQL(
                f'DROP INDEX IF EXISTS "{index}"',
                reverse_sql=f'CREATE INDEX "{index}" ON "wallets_entry" ("{column}")',
            ),
        ],
    )


class Migration(migrations.Migration):
    dependencies = [
        ("wallets", "0005_hold_owner"),
    ]

    operations = [
        migrations.AddConstraint(
            model_name="entry",
            constraint=models.UniqueConstraint(fields=("transfer", "account"), name="entry_one_leg_per_account"),
        ),
        _drop_fk_index("transfer", "wallets.transfer", "wallets_entry_transfer_id_a90bf50d"),
        _drop_fk_index("account", "wallets.account", "wallets_entry_account_id_8b96ee76"),
    ]
