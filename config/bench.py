"""`manage.py bench` scenarios, contributed by each app in its `bench.py` module
(discovered like seeds.py), and the helpers they measure with.

A scenario is `fn(*, n, out) -> dict | list[dict]`: it runs `n` measured operations
against the configured database and returns one result per thing measured, usually
`{**timer.result(), ...scenario-specific keys}`. `out` takes human notes; the command
sends them to stderr so that stdout is only `emit`'s JSON lines.

Real-HTTP scenarios share one harness, `HttpBench`: gunicorn started as production starts
it (`-c gunicorn.conf.py`, its worker count unless BENCH_GUNICORN_WORKERS overrides it),
driven by a separate client process (`http_client_main`) whose threads send requests
prepared up front over plain keep-alive sockets, so that the client costs as little of
the shared cores as it can; each run reports the CPU that the gunicorn workers, the
database backends and the client spent per request (`CpuMeter`, from /proc). `pgbench`
runs a SQL script with PostgreSQL's own client, the rate the database allows for the
same transaction with no Python in the way.
"""

import cProfile
import glob
import itertools
import json
import math
import multiprocessing
import os
import queue
import re
import resource
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from time import perf_counter, thread_time
from urllib.parse import quote

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
    """Times one operation per `with timer:` block; `result()` measures them all.

    Beside wall-clock rates it reports what a shared machine does not blur: the CPU this
    thread spent per operation (`cpu_ms_per_op`, time.thread_time: the in-process client,
    Django and the driver, not PostgreSQL) and the SQL statements the default connection
    executed per operation (`statements_per_op`, savepoints included, counted by an
    execute wrapper installed only inside the block).
    """

    def __init__(self):
        self.latencies: list[float] = []
        # BENCH_PROFILE=<file>: a cProfile of the measured operations only (not the setup).
        self.profile_path = os.environ.get("BENCH_PROFILE")
        self.profiler = cProfile.Profile() if self.profile_path else None
        self.cpu_seconds = 0.0
        self.statements = 0
        self._start = 0.0
        self._cpu_start = 0.0

    def _count(self, execute, sql, params, many, context):
        self.statements += 1
        return execute(sql, params, many, context)

    def __enter__(self):
        connection.execute_wrappers.append(self._count)
        if self.profiler:
            self.profiler.enable()
        self._cpu_start = thread_time()
        self._start = perf_counter()
        return self

    def __exit__(self, *exc_info):
        self.latencies.append(perf_counter() - self._start)
        if self.profiler:
            self.profiler.disable()
        self.cpu_seconds += thread_time() - self._cpu_start
        connection.execute_wrappers.remove(self._count)
        return False

    def result(self) -> dict:
        if self.profiler:
            self.profiler.dump_stats(self.profile_path)
        figures = measure(self.latencies)
        ops = len(self.latencies)
        return {
            **figures,
            "cpu_ms_per_op": round(self.cpu_seconds * 1000 / ops, 3),
            "statements_per_op": round(self.statements / ops, 2),
        }


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


def ratio(value: float | None, of: float | None) -> float | None:
    """value / of, to three places; None when either is missing or `of` is zero."""
    if not value or not of:
        return None
    return round(value / of, 3)


# --- CPU of other processes, from /proc --------------------------------------------------

_CLOCK_TICKS = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def _proc_cpu_ticks(pid: int) -> int | None:
    """utime + stime of a process (clock ticks), None if it is gone or not visible."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as stat:
            data = stat.read()
    except OSError:
        return None
    fields = data[data.rfind(b")") + 2 :].split()  # after the command name, which may hold spaces
    return int(fields[11]) + int(fields[12])  # fields 14 and 15 of proc(5)


def _proc_ppid(pid: int) -> int | None:
    try:
        with open(f"/proc/{pid}/stat", "rb") as stat:
            data = stat.read()
    except OSError:
        return None
    return int(data[data.rfind(b")") + 2 :].split()[1])


def proc_children(pid: int) -> list[int]:
    """The live children of a single-threaded process (gunicorn's master, the postmaster)."""
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as children:
            return [int(child) for child in children.read().split()]
    except OSError:
        return []


class CpuMeter:
    """CPU time (user + system) spent by groups of processes during a `with` block.

    `groups` maps a name to a function listing the group's pids now. The processes are
    sampled every `interval` seconds in a thread, so a process that starts and ends inside
    the block (a pgbench connection's backend, a gunicorn worker restarted) still counts,
    but for at most its last interval. A process seen at the start counts from there; one
    seen later counts from its own start. Linux only: elsewhere every figure is None.
    After the block, `seconds[name]` is the group's CPU seconds.
    """

    def __init__(self, groups: dict[str, Callable[[], Iterable[int]]], interval: float = 0.1):
        self.groups = groups
        self.interval = interval
        self.seconds: dict[str, float | None] = {}
        self._first: dict[str, dict[int, int]] = {name: {} for name in groups}
        self._last: dict[str, dict[int, int]] = {name: {} for name in groups}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._poll, daemon=True)

    def _sample(self, *, initial: bool = False) -> None:
        for name, pids in self.groups.items():
            first, last = self._first[name], self._last[name]
            for pid in pids():
                ticks = _proc_cpu_ticks(pid)
                if ticks is None:
                    continue
                first.setdefault(pid, ticks if initial else 0)
                last[pid] = ticks

    def _poll(self) -> None:
        while not self._stop.wait(self.interval):
            self._sample()

    def __enter__(self):
        self._sample(initial=True)
        self._thread.start()
        return self

    def __exit__(self, *exc_info):
        self._stop.set()
        self._thread.join()
        self._sample()
        visible = os.path.isdir("/proc/self")
        for name in self.groups:
            first, last = self._first[name], self._last[name]
            ticks = sum(last[pid] - first[pid] for pid in last)
            self.seconds[name] = ticks / _CLOCK_TICKS if visible else None
        return False


def database_backends() -> Callable[[], list[int]] | None:
    """A pid lister for the PostgreSQL backends serving this database, other than this
    process's own connection; None if the server's processes are not visible here (not
    PostgreSQL, another host or container)."""
    if connection.vendor != "postgresql":
        return None
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_backend_pid(), current_user, current_database()")
        own, user, database = cursor.fetchone()
    postmaster = _proc_ppid(own)
    if postmaster is None or own not in proc_children(postmaster):
        return None
    # A backend's title (ps, /proc/<pid>/cmdline): "postgres: 15/main: <user> <database> <client> <state>".
    marker = f" {user} {database} ".encode()
    ours: dict[int, bool] = {}

    def pids() -> list[int]:
        found = []
        for pid in proc_children(postmaster):
            if pid == own:
                continue
            if pid not in ours:
                try:
                    with open(f"/proc/{pid}/cmdline", "rb") as cmdline:
                        title = cmdline.read().replace(b"\0", b" ")
                except OSError:
                    continue
                if not title.startswith(b"postgres: "):
                    continue  # just forked, still the postmaster's command line: look again next time
                ours[pid] = marker in title
            if ours[pid]:
                found.append(pid)
        return found

    return pids


def _per_op_ms(seconds: float | None, ops: int) -> float | None:
    return None if seconds is None or not ops else round(seconds * 1000 / ops, 3)


# --- pgbench -------------------------------------------------------------------------------

PGBENCH = os.environ.get("BENCH_PGBENCH", "/usr/bin/pgbench")


def pgbench(script: str, *, seconds: int, clients: int = 8, threads: int = 2) -> dict:
    """Run `script` (pgbench's script language) with `pgbench -n -c clients -j threads -T
    seconds` against the configured database: transactions/s (excluding connection time),
    p50/p99 from the per-transaction log, the database's CPU per transaction (its
    backends, sampled) and pgbench's own."""
    check(connection.vendor == "postgresql", "pgbench needs PostgreSQL: set DATABASE_URL")
    check(os.access(PGBENCH, os.X_OK), f"no pgbench at {PGBENCH} (set BENCH_PGBENCH)")
    db = connection.settings_dict
    env = {
        **os.environ,
        "PGHOST": db["HOST"] or "127.0.0.1",
        "PGPORT": str(db["PORT"] or 5432),
        "PGUSER": db["USER"] or "",
        "PGPASSWORD": db["PASSWORD"] or "",
        "PGDATABASE": db["NAME"],
    }
    backends = database_backends()
    with tempfile.TemporaryDirectory(prefix="bench-pgbench-") as tmp:
        script_path = Path(tmp, "script.sql")
        script_path.write_text(script)
        cmd = [PGBENCH, "-n", "-c", str(clients), "-j", str(threads), "-T", str(seconds)]
        cmd += ["-f", str(script_path), "-l", f"--log-prefix={tmp}/tx"]
        with (
            open(Path(tmp, "stdout"), "w+") as stdout,
            open(Path(tmp, "stderr"), "w+") as stderr,
            CpuMeter({"db": backends or (lambda: [])}) as meter,
        ):
            proc = subprocess.Popen(cmd, env=env, stdout=stdout, stderr=stderr)
            _, status, usage = os.wait4(proc.pid, 0)  # wait4: pgbench's own CPU time as well
            proc.returncode = os.waitstatus_to_exitcode(status)
        report = Path(tmp, "stdout").read_text()
        check(proc.returncode == 0, f"pgbench failed ({proc.returncode}): {Path(tmp, 'stderr').read_text()[-2000:]}")
        latencies = sorted(
            int(line.split()[2]) / 1_000_000
            for log in glob.glob(f"{tmp}/tx.*")
            for line in Path(log).read_text().splitlines()
            if line.strip()
        )
    tps = re.search(r"^tps = ([\d.]+) \(without initial connection time\)", report, re.M)
    done = re.search(r"^number of transactions actually processed: (\d+)", report, re.M)
    failed = re.search(r"^number of failed transactions: (\d+)", report, re.M)
    check(tps is not None and done is not None, f"unexpected pgbench report: {report[-1000:]}")
    transactions = int(done.group(1))
    check(len(latencies) == transactions, f"pgbench logged {len(latencies)} of {transactions} transactions")
    check(transactions > 0, "pgbench processed no transaction")
    return {
        "ops_per_s": round(float(tps.group(1)), 1),
        "p50_ms": round(percentile(latencies, 50) * 1000, 3),
        "p99_ms": round(percentile(latencies, 99) * 1000, 3),
        "transactions": transactions,
        "failed": int(failed.group(1)) if failed else 0,
        "clients": clients,
        "threads": threads,
        "seconds": seconds,
        "db_cpu_ms_per_op": _per_op_ms(meter.seconds["db"] if backends else None, transactions),
        "client_cpu_ms_per_op": _per_op_ms(usage.ru_utime + usage.ru_stime, transactions),
    }


# --- real HTTP -----------------------------------------------------------------------------

HTTP_CLIENTS = 8  # concurrent connections the client process keeps busy


def _read_response(sock: socket.socket) -> tuple[int, bytes, bool]:
    """One HTTP/1.1 response from `sock`: (status, body, whether the server closes)."""
    data = b""
    while (end := data.find(b"\r\n\r\n")) < 0:
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError("the server closed the connection without a complete answer")
        data += chunk
    head = data[:end].lower()
    body = data[end + 4 :]
    status = int(head[9:12])
    close = head.startswith(b"http/1.0") or b"\r\nconnection: close" in head
    at = head.find(b"\r\ncontent-length:")
    if at < 0:
        if b"\r\ntransfer-encoding:" in head:
            raise ConnectionError("a chunked response: this client reads Content-Length or close-delimited bodies")
        while chunk := sock.recv(65536):  # delimited by the end of the connection
            body += chunk
        return status, body, True
    stop = head.find(b"\r\n", at + 2)
    length = int(head[at + 17 : stop if stop >= 0 else None])
    while len(body) < length:
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError(f"the server closed the connection {len(body)} bytes into a {length}-byte body")
        body += chunk
    check(len(body) == length, "more bytes than the response's Content-Length: this client does not pipeline")
    return status, body, close


def _http_client_run(job: dict) -> dict:
    """Send every request of `job` from `concurrency` threads, each on its own connection,
    kept alive for as long as the server allows (gunicorn's sync workers close it after
    each response; threaded ones keep it). Requests come prepared (raw bytes); a thread
    takes the next one as soon as it has its answer."""
    address = ("127.0.0.1", job["port"])
    requests = [raw.encode("latin-1") for raw in job["requests"]]
    total = len(requests)
    expect = job["expect"]
    keep_bodies = job["keep_bodies"]
    latencies = [0.0] * total
    statuses = [0] * total
    bodies: list[str] | None = [""] * total if keep_bodies else None
    unexpected: list[str] = []
    errors: list[str] = []
    connects: list[int] = []  # one count per thread, appended when it is done
    order = itertools.count()  # next() of a count is atomic under the GIL
    threads = min(job["concurrency"], total)
    barrier = threading.Barrier(threads + 1)

    def worker():
        sock, opened = None, 0
        barrier.wait()
        try:
            while (i := next(order)) < total:
                start = perf_counter()
                if sock is None:
                    sock = socket.create_connection(address)
                    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                    opened += 1
                sock.sendall(requests[i])
                status, body, close = _read_response(sock)
                latencies[i] = perf_counter() - start
                statuses[i] = status
                if close:
                    sock.close()
                    sock = None
                if keep_bodies:
                    bodies[i] = body.decode("latin-1")
                if status != expect and not unexpected:
                    unexpected.append(f"{status} {body[:500].decode('latin-1')}")
        except Exception as exc:  # reported to the parent, which fails the scenario
            errors.append(f"{type(exc).__name__}: {exc}")
        finally:
            connects.append(opened)
            if sock is not None:
                sock.close()

    pool = [threading.Thread(target=worker) for _ in range(threads)]
    for thread in pool:
        thread.start()
    before = resource.getrusage(resource.RUSAGE_SELF)
    barrier.wait()
    started = perf_counter()
    for thread in pool:
        thread.join()
    wall = perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_SELF)
    return {
        "latencies": latencies,
        "statuses": statuses,
        "bodies": bodies,
        "unexpected": unexpected[:1],
        "errors": errors,
        "wall_s": wall,
        "cpu_s": (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime),
        "connections": sum(connects),
    }


def http_client_main() -> None:
    """The client process: one JSON job per line on stdin, one JSON answer per line on
    stdout. Started by HttpBench; needs nothing of Django."""
    for line in sys.stdin:
        answer = _http_client_run(json.loads(line))
        sys.stdout.write(json.dumps(answer) + "\n")
        sys.stdout.flush()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _exchange_once(port: int, raw: bytes, timeout: float) -> tuple[int, bytes]:
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall(raw)
        status, body, _ = _read_response(sock)
    return status, body


class HttpBench:
    """gunicorn serving the configured database on 127.0.0.1, and a client process that
    sends it requests: the one harness of every real-HTTP scenario.

        with HttpBench(out) as http:
            raw = http.request("POST", "/api/v1/...", headers={...}, body={...})
            http.run([raw] * WARMUP, expect=200)          # unmeasured: warm every worker
            figures, bodies = http.run(requests, expect=200, keep_bodies=True)

    gunicorn is started as in production, `-c gunicorn.conf.py`, so that file's worker
    count and worker class apply; BENCH_GUNICORN_WORKERS (or `bench --gunicorn-workers`)
    overrides the count. `run` fails the scenario unless every request got `expect`.
    """

    def __init__(self, out, *, clients: int = HTTP_CLIENTS):
        self.out = out
        self.clients = clients
        self.port = _free_port()
        self.workers_override = os.environ.get("BENCH_GUNICORN_WORKERS") or None
        self.server: subprocess.Popen | None = None
        self.client: subprocess.Popen | None = None
        self._server_log = None

    # gunicorn's environment: production settings, this database, nothing that refuses
    # a benchmark's request rate or answers plain HTTP with a redirect.
    def _server_env(self) -> dict:
        db = connection.settings_dict  # the database this process uses (a test's, in tests)
        credentials = quote(db["USER"] or "", safe="")
        if db["PASSWORD"]:
            credentials += ":" + quote(db["PASSWORD"], safe="")
        database_url = f"postgres://{credentials}@{db['HOST'] or '127.0.0.1'}:{db['PORT'] or 5432}/{db['NAME']}"
        return {
            **os.environ,
            "DATABASE_URL": database_url,
            "DEBUG": "false",
            "SECRET_KEY": os.environ.get("SECRET_KEY", "bench-only-secret-key-" + os.urandom(16).hex()),
            "JWT_SECRET": os.environ.get("JWT_SECRET", "bench-only-jwt-secret-" + os.urandom(16).hex()),
            "ALLOWED_HOSTS": "127.0.0.1,localhost",
            "SECURE_SSL_REDIRECT": "false",
            # Per second: DRF keeps one timestamp per request in the window, so a per-minute
            # rate high enough for a benchmark would make every request (un)pickle a list of
            # tens of thousands; per second it holds about what the default 1000/min does.
            "API_THROTTLE_RATE": "1000000/s",
            "LOG_LEVEL": "WARNING",
        }

    def __enter__(self):
        base = Path(settings.BASE_DIR)
        cmd = [str(Path(sys.executable).with_name("gunicorn")), "-c", "gunicorn.conf.py", "config.wsgi:application"]
        cmd += ["--bind", f"127.0.0.1:{self.port}", "--log-level", "warning"]
        if self.workers_override:
            cmd += ["--workers", self.workers_override]
        self.out(f"  starting {' '.join(cmd[1:])}")
        self._server_log = tempfile.TemporaryFile()
        self.server = subprocess.Popen(
            cmd, cwd=base, env=self._server_env(), stdout=subprocess.DEVNULL, stderr=self._server_log
        )
        try:
            self._wait_for_server()
            self.client = subprocess.Popen(
                [sys.executable, "-c", "from config.bench import http_client_main; http_client_main()"],
                cwd=base,
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                text=True,
            )
            self.db_backends = database_backends()
        except BaseException:
            self.__exit__(None, None, None)
            raise
        return self

    def _server_errors(self) -> str:
        self._server_log.seek(0)
        return self._server_log.read().decode(errors="replace")[-3000:]

    def _wait_for_server(self) -> None:
        ping = self.request("GET", "/api/v1/payments/ping")
        deadline = time.monotonic() + 120  # several workers importing Django on busy shared cores
        while time.monotonic() < deadline:
            check(self.server.poll() is None, f"gunicorn exited: {self._server_errors()}")
            try:
                if _exchange_once(self.port, ping, timeout=2)[0] == 200:
                    return
            except OSError:
                pass
            time.sleep(0.3)
        raise BenchError(f"gunicorn did not answer within 120 s: {self._server_errors()}")

    def __exit__(self, *exc_info):
        if self.client is not None:
            self.client.stdin.close()
            self.client.wait(timeout=30)
        if self.server is not None:
            self.server.terminate()
            self.server.wait(timeout=60)
        if self._server_log is not None:
            self._server_log.close()
        return False

    def workers(self) -> list[int]:
        return proc_children(self.server.pid)

    def request(self, method: str, path: str, *, headers: dict | None = None, body=None) -> bytes:
        """A request prepared once, as the bytes sent on the wire; `body` is sent as JSON."""
        lines = [f"{method} {path} HTTP/1.1", f"Host: 127.0.0.1:{self.port}"]
        lines += [f"{name}: {value}" for name, value in (headers or {}).items()]
        payload = b""
        if body is not None:
            payload = json.dumps(body).encode()
            lines += ["Content-Type: application/json", f"Content-Length: {len(payload)}"]
        return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + payload

    def run(self, requests: Sequence[bytes], *, expect: int, keep_bodies: bool = False) -> tuple[dict, list | None]:
        """Send `requests` from the client process's connections; the figures, and each
        request's response body (parsed JSON) if `keep_bodies`.

        ops/s is over the wall time of the whole batch. server_cpu is the gunicorn
        workers', db_cpu the database backends' (None where they are not visible),
        client_cpu the client process's own, each per request; cpu_busy is all three
        as a share of the machine's cores over the batch.
        """
        check(len(requests) > 0, "nothing to send")
        job = {
            "port": self.port,
            "concurrency": self.clients,
            "requests": [raw.decode("latin-1") for raw in requests],
            "expect": expect,
            "keep_bodies": keep_bodies,
        }
        groups = {"server": self.workers}
        if self.db_backends is not None:
            groups["db"] = self.db_backends
        workers = len(self.workers())
        with CpuMeter(groups) as meter:
            self.client.stdin.write(json.dumps(job) + "\n")
            self.client.stdin.flush()
            line = self.client.stdout.readline()
        check(bool(line), f"the HTTP client process died (exit code {self.client.poll()})")
        answer = json.loads(line)
        check(not answer["errors"], f"{len(answer['errors'])} client connections failed: {answer['errors'][:3]}")
        statuses = answer["statuses"]
        wrong = sum(1 for status in statuses if status != expect)
        check(
            wrong == 0,
            f"{wrong} of {len(statuses)} requests answered other than {expect}, first: {answer['unexpected'][:1]}; "
            f"server log: {self._server_errors()[-1000:]}",
        )
        count = len(requests)
        ordered = sorted(answer["latencies"])
        server_s, db_s, client_s = meter.seconds["server"], meter.seconds.get("db"), answer["cpu_s"]
        spent = [s for s in (server_s, db_s, client_s) if s is not None]
        figures = {
            "ops_per_s": round(count / answer["wall_s"], 1),
            "p50_ms": round(percentile(ordered, 50) * 1000, 3),
            "p99_ms": round(percentile(ordered, 99) * 1000, 3),
            "requests": count,
            "clients": self.clients,
            "gunicorn_workers": workers,
            "connections": answer["connections"],
            "server_cpu_ms_per_req": _per_op_ms(server_s, count),
            "db_cpu_ms_per_req": _per_op_ms(db_s, count),
            "client_cpu_ms_per_req": _per_op_ms(client_s, count),
            "cpu_busy": round(sum(spent) / (answer["wall_s"] * (os.cpu_count() or 1)), 2),
        }
        bodies = [json.loads(body) for body in answer["bodies"]] if keep_bodies else None
        return figures, bodies
