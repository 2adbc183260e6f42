import os
import sys

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError


def embedded_worker_argv(*, concurrency: int = 2, loglevel: str = "info") -> list[str]:
    """The Celery command line of the embedded default's worker: one process that also runs
    beat (-B), so there is exactly one beat. No gossip or mingle: they talk to other
    workers, and there are none (mingle would wait for their answers at every start)."""
    return [
        sys.executable,
        "-m",
        "celery",
        "-A",
        "config",
        "worker",
        "--beat",
        f"--concurrency={concurrency}",
        f"--loglevel={loglevel}",
        "--without-gossip",
        "--without-mingle",
    ]


class Command(BaseCommand):
    help = (
        "Run a Celery worker with beat on kombu's filesystem broker (messages are files in "
        "CELERY_FILESYSTEM_BROKER_DIR, default .run/broker): the embedded default's background "
        "work and periodic tasks, with no broker server. `make run` starts it when no broker is "
        "configured, and runs the web server with CELERY_BROKER_URL=filesystem:// so its tasks "
        "go to this worker. With a real broker configured, run `make worker` and `make beat`."
    )
    requires_system_checks = []

    def add_arguments(self, parser):
        parser.add_argument("--concurrency", type=int, default=2, help="Worker processes (default 2).")
        parser.add_argument("--loglevel", default="info", help="Celery's log level (default info).")

    def handle(self, *args, concurrency: int, loglevel: str, **options):
        broker = settings.CELERY_BROKER_URL
        if broker and not broker.startswith("filesystem://"):
            scheme = broker.partition("://")[0]
            raise CommandError(
                f"A {scheme} broker is configured (CELERY_BROKER_URL or REDIS_URL): the web server sends "
                "its tasks there, so run `make worker` and `make beat` instead."
            )
        env = {**os.environ, "CELERY_BROKER_URL": "filesystem://", "CELERY_TASK_ALWAYS_EAGER": "0"}
        argv = embedded_worker_argv(concurrency=concurrency, loglevel=loglevel)
        sys.stdout.flush()
        os.execve(argv[0], argv, env)  # the worker takes this process's pid, so `make run` can stop it
