import os

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError
from django.test import override_settings
from django.utils.module_loading import autodiscover_modules

from config.bench import BenchError, emit, scenarios

# High enough that no scenario is ever refused a request; the throttle still runs.
BENCH_THROTTLE_RATE = "100000000/min"
BENCH_MOCK_WEBHOOK_SECRET = "mock_whsec_bench_only"

# What the closing table shows beside each result's rate and latencies, when present.
SUMMARY = (
    ("scope", "{}"),  # admin-dashboard's results differ by scope and range only
    ("range", "range {}"),
    ("vs_pgbench", "vs pgbench {}"),
    ("service_vs_raw", "service/raw SQL {}"),
    ("vs_target", "vs target {}"),
    ("p50_vs_1k_entries", "p50 vs 1k entries {}"),
    ("cpu_ms_per_op", "{} ms CPU/op"),
    ("statements_per_op", "{} statements/op"),
    ("server_cpu_ms_per_req", "server {} ms CPU/req"),
    ("db_cpu_ms_per_req", "db {}"),
    ("db_cpu_ms_per_op", "db {} ms CPU/op"),
    ("client_cpu_ms_per_req", "client {}"),
    ("cpu_busy", "cores busy {:.0%}"),
    ("gunicorn_workers", "workers {}"),
    ("lost_updates", "lost {}"),
)


def summary_line(result: dict) -> str:
    def figure(key):
        value = result.get(key)
        return "-" if value is None else f"{value:g}"

    notes = [label.format(result[key]) for key, label in SUMMARY if result.get(key) is not None]
    return (
        f"{result['scenario']:<44} {figure('ops_per_s'):>9} {figure('p50_ms'):>9} {figure('p99_ms'):>9}  "
        + ", ".join(notes)
    )


class Command(BaseCommand):
    help = (
        "Run benchmark scenarios against the configured database (DATABASE_URL, not a test database): "
        "in-process, or over real HTTP through gunicorn for the *-http ones. Prints one JSON line per "
        "result, then a table of them on stderr. Leaves its bench data behind."
    )

    def add_arguments(self, parser):
        parser.add_argument("scenario", nargs="?", help="A scenario name, or `all`.")
        parser.add_argument("--n", type=int, default=None, help="Measured operations (default: per scenario).")
        parser.add_argument("--list", action="store_true", dest="list_scenarios", help="List scenarios and exit.")
        parser.add_argument(
            "--gunicorn-workers",
            type=int,
            default=None,
            help="Workers for the HTTP scenarios' gunicorn (default: gunicorn.conf.py's; env BENCH_GUNICORN_WORKERS).",
        )

    def handle(
        self, *args, scenario: str | None, n: int | None, list_scenarios: bool, gunicorn_workers: int | None, **options
    ):
        autodiscover_modules("bench")
        known = scenarios()
        if list_scenarios:
            for s in known:
                self.stdout.write(f"{s.name:<24} {s.help} (default n={s.default_n})")
            return
        names = ", ".join(["all", *(s.name for s in known)])
        if scenario is None:
            raise CommandError(f"Name a scenario: {names}.")
        chosen = known if scenario == "all" else [s for s in known if s.name == scenario]
        if not chosen:
            raise CommandError(f"Unknown scenario {scenario!r}. Known: {names}.")
        if n is not None and n < 1:
            raise CommandError("--n must be at least 1.")
        if gunicorn_workers is not None:
            if gunicorn_workers < 1:
                raise CommandError("--gunicorn-workers must be at least 1.")
            os.environ["BENCH_GUNICORN_WORKERS"] = str(gunicorn_workers)  # read by config.bench.HttpBench

        def note(message: str) -> None:
            self.stderr.write(message, style_func=lambda text: text)

        with override_settings(
            DEBUG=False,  # as in production: DEBUG would record every query and skew the figures
            API_THROTTLE_RATE=BENCH_THROTTLE_RATE,
            ALLOWED_HOSTS=[*settings.ALLOWED_HOSTS, "testserver"],
            # The payment scenarios pay through the mock provider, off in production: on for
            # this run only (and with a secret of its own if none is configured).
            MOCK_PROVIDER_ENABLED=True,
            MOCK_WEBHOOK_SECRET=settings.MOCK_WEBHOOK_SECRET or BENCH_MOCK_WEBHOOK_SECRET,
        ):
            printed = []
            for s in chosen:
                count = n or s.default_n
                try:
                    results = s.func(n=count, out=note)
                except BenchError as exc:
                    raise CommandError(f"{s.name}: {exc}")
                for result in results if isinstance(results, list) else [results]:
                    printed.append({"scenario": s.name, "n": count, **result})
                    emit(self.stdout.write, printed[-1])
        # The figures side by side, for people (stdout stays JSON lines for machines).
        note(f"\n{'scenario':<44} {'ops/s':>9} {'p50 ms':>9} {'p99 ms':>9}")
        for result in printed:
            note(summary_line(result))
