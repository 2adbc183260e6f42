from django.apps import AppConfig
from django.contrib.admin.apps import AdminConfig
from django.db.models.signals import post_migrate


class PaydeskAdminConfig(AdminConfig):
    """django.contrib.admin with Paydesk's site (sections, exports) as the default site."""

    default_site = "config.admin_site.PaydeskAdminSite"


class PaydeskConfig(AppConfig):
    """Project-wide plumbing that needs tables: idempotency keys, periodic task registry."""

    name = "config"
    label = "paydesk"
    verbose_name = "Paydesk platform"

    def ready(self):
        from . import periodic

        periodic.register(
            name="Purge expired idempotency keys",
            task="config.tasks.idempotency_keys_purge_task",
            every_seconds=3600,
        )
        post_migrate.connect(_ensure_periodic_tasks, sender=self)


def _ensure_periodic_tasks(using="default", **kwargs):
    from .periodic import ensure_periodic_tasks

    ensure_periodic_tasks(using=using)
