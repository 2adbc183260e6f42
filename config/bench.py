"""`manage.py bench` scenarios, contributed by each app in its `bench.py` module
(discovered like seeds.py), and the helpers they measure with.

A scenario is `fn(*, n, out) -> dict | list[dict]`: it runs `n` measured operations
against the configured database and returns one result per thing measured, usually
`{**timer.result(), ...scenario-specific keys}`. `out` takes human notes; the command
sends them to stderr so that stdout is only `emit`'s JSON lines.
"""

import json
import math
import multiprocessing
import queue
import resource
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from time import perf_counter

from django.conf import settings
from django.db import connection

WARMUP = 50  # unmeasured operations first: imports, URL resolver, connection, caches


class BenchError(Exception):
    """A scenario got a wrong answer: its figures would mean nothing."""


@dataclass(frozen=True)
class Scenario:
    name: str
    func: Callable[..., dict | list[dict]]
    help: str
    default_n: int


_SCENARIOS: dict[str, Scenario] = {}


def scenario(name: str, *, help: str = "", n: int = 1000):
    """Register `fn(*, n, out)` as benchmark `name`; `n` is its default operation count."""

    def decorator(func):
        _SCENARIOS.setdefault(name, Scenario(name=name, func=func, help=help, default_n=n))
        return func

    return decorator


def scenarios() -> list[Scenario]:
    return sorted(_SCENARIOS.values(), key=lambda s: s.name)


def check(condition: bool, message: str) -> None:
    """`assert` that survives `python -O`."""
    if not condition:
        raise BenchError(message)


def percentile(sorted_values: Sequence[float], p: float) -> float:
    """Nearest-rank percentile of already sorted values."""
    rank = max(math.ceil(p / 100 * len(sorted_values)), 1)
    return sorted_values[rank - 1]


def peak_rss_mb() -> float:
    """Peak resident memory of this process so far (ru_maxrss: KiB on Linux, bytes on macOS)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return round(peak / (1024 * 1024 if sys.platform == "darwin" else 1024), 1)


def own_peak_rss_mb() -> float:
    """This process's own peak resident memory.

    Not ru_maxrss: Linux carries a parent's peak into a spawned (fork + exec) child's
    ru_maxrss, so a collector spawned by the parent that seeded 100k rows would report
    the parent's size, not its own. VmHWM is the peak of the process's own address space
    (Linux); elsewhere, ru_maxrss is what there is.
    """
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return round(int(line.split()[1]) / 1024, 1)
    except OSError:
        pass
    return peak_rss_mb()


def measure(latencies: Sequence[float]) -> dict:
    """ops/s, p50 and p99 (ms) from per-operation durations in seconds (perf_counter).

    ops/s is over the time spent in the operations, so checks between them don't count.
    """
    check(len(latencies) > 0, "nothing was measured")
    ordered = sorted(latencies)
    return {
        "ops_per_s": round(len(ordered) / sum(ordered), 1),
        "p50_ms": round(percentile(ordered, 50) * 1000, 3),
        "p99_ms": round(percentile(ordered, 99) * 1000, 3),
        "peak_rss_mb": peak_rss_mb(),
    }


class Timer:
    """Times one operation per `with timer:` block; `result()` measures them all."""

    def __init__(self):
        self.latencies: list[float] = []
        self._start = 0.0

    def __enter__(self):
        self._start = perf_counter()
        return self

    def __exit__(self, *exc_info):
        self.latencies.append(perf_counter() - self._start)
        return False

    def result(self) -> dict:
        return measure(self.latencies)


def emit(out: Callable[[str], None], result: dict) -> None:
    """Write one result as one JSON line, with what is needed to compare runs."""
    line = {
        "scenario": result.get("scenario"),
        "n": result.get("n"),
        "ops_per_s": None,
        "p50_ms": None,
        "p99_ms": None,
        "peak_rss_mb": peak_rss_mb(),
        "database": connection.vendor,
        "debug": settings.DEBUG,  # DEBUG records every query: slower than production
        **result,
    }
    out(json.dumps(line, default=str))


def _spawned(target: str, args: tuple, overrides: dict, results) -> None:
    import django

    django.setup()
    from django.test import override_settings
    from django.utils.module_loading import import_string

    try:
        with override_settings(**overrides):  # what the bench command set for this run
            results.put(("ok", import_string(target)(*args)))
    except BaseException as exc:
        results.put(("error", f"{type(exc).__name__}: {exc}"))
        raise


def run_in_fresh_processes(target: str, args: tuple, count: int) -> list[dict]:
    """Run `target` (the dotted path of fn(*args) -> dict) in `count` new interpreters at
    once and return what each returned. Spawned, not forked: a worker starts from a fresh
    address space (report its memory with own_peak_rss_mb: ru_maxrss would still carry
    the parent's peak on Linux). A worker that fails or dies fails the scenario."""
    ctx = multiprocessing.get_context("spawn")
    results = ctx.Queue()
    overrides = {name: getattr(settings, name) for name in ("DEBUG", "MOCK_PROVIDER_ENABLED", "MOCK_WEBHOOK_SECRET")}
    procs = [ctx.Process(target=_spawned, args=(target, args, overrides, results)) for _ in range(count)]
    for process in procs:
        process.start()
    answers = []
    while len(answers) < count:
        try:
            status, value = results.get(timeout=1)
        except queue.Empty:
            dead = [p.exitcode for p in procs if p.exitcode not in (None, 0)]
            check(not dead, f"a worker process died (exit codes {dead})")
            continue
        check(status == "ok", f"a worker failed: {value}")
        answers.append(value)
    for process in procs:
        process.join()
    return answers
