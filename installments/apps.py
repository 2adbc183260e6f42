from django.apps import AppConfig


class InstallmentsConfig(AppConfig):
    name = "installments"

    def ready(self):
        from config import periodic

        periodic.register(
            name="Collect due installments",
            task="installments.tasks.installments_collect_task",
            every_seconds=300,
        )
