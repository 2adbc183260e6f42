from django.apps import AppConfig


class WalletsConfig(AppConfig):
    name = "wallets"

    def ready(self):
        from config import periodic

        periodic.register(name="Ledger audit", task="wallets.tasks.ledger_audit_task", every_seconds=3600)
        periodic.register(name="Expire wallet holds", task="wallets.tasks.holds_expire_task", every_seconds=60)
