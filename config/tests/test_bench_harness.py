"""The measuring instruments of `manage.py bench`: the HTTP client process's response
reader and connection handling, the /proc CPU meter, pgbench's figures and the HTTP
harness's refusal to report figures for wrong answers."""

import os
import socket
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from django.db import connection

from config.bench import (
    BenchError,
    CpuMeter,
    HttpBench,
    _http_client_run,
    _read_response,
    pgbench,
)
from config.management.commands.bench import summary_line

_PEERS: list[socket.socket] = []  # the sending ends left open: the connection stays up


def _answer(raw: bytes, *, close_after: bool = False) -> socket.socket:
    """The reading end of a socket pair whose other end sends `raw` (then closes, if asked)."""
    ours, theirs = socket.socketpair()

    def send():
        theirs.sendall(raw)  # from a thread: more than the socket buffer holds would block
        if close_after:
            theirs.close()
        else:
            _PEERS.append(theirs)

    threading.Thread(target=send, daemon=True).start()
    return ours


def test_read_response_reads_exactly_content_length_and_keeps_the_connection():
    body = b"x" * 200_000  # several recv() calls
    sock = _answer(b"HTTP/1.1 201 Created\r\nContent-Type: application/json\r\nContent-Length: 200000\r\n\r\n" + body)
    assert _read_response(sock) == (201, body, False)


def test_read_response_sees_connection_close_and_close_delimited_bodies():
    sock = _answer(b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 2\r\n\r\n{}")
    assert _read_response(sock) == (200, b"{}", True)
    sock = _answer(b"HTTP/1.0 402 Payment Required\r\nServer: x\r\n\r\nno length", close_after=True)
    assert _read_response(sock) == (402, b"no length", True)


@pytest.mark.parametrize(
    "raw",
    [
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\n{}\r\n0\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n{}",
        b"HTTP/1.1 200 OK\r\nContent-Len",
    ],
    ids=["chunked", "truncated body", "truncated head"],
)
def test_read_response_refuses_what_it_cannot_read_whole(raw):
    with pytest.raises(ConnectionError):
        _read_response(_answer(raw, close_after=True))


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    connections = 0

    def get_request(self):
        self.connections += 1
        return super().get_request()


def _serve(close: bool):
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_POST(self):
            body = self.rfile.read(int(self.headers["Content-Length"]))
            answer = b'{"path": "%s", "got": %s}' % (self.path.encode(), body)
            self.send_response(418 if self.path == "/teapot" else 200)
            self.send_header("Content-Length", str(len(answer)))
            if close:
                self.send_header("Connection", "close")
            self.end_headers()
            self.wfile.write(answer)

        def log_message(self, *args):
            pass

    server = _Server(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def _post(port: int, path: str, body: bytes) -> str:
    head = f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Length: {len(body)}\r\n\r\n"
    return (head.encode() + body).decode("latin-1")


@pytest.mark.parametrize("close", [False, True], ids=["keep-alive", "connection close"])
def test_client_sends_every_request_once_and_reuses_connections_the_server_keeps(close):
    server = _serve(close)
    port = server.server_address[1]
    try:
        job = {
            "port": port,
            "concurrency": 4,
            "requests": [_post(port, f"/r/{i}", b"%d" % i) for i in range(40)],
            "expect": 200,
            "keep_bodies": True,
        }
        answer = _http_client_run(job)
    finally:
        server.shutdown()
        server.server_close()
    assert answer["errors"] == [] and answer["unexpected"] == []
    assert answer["statuses"] == [200] * 40
    assert answer["bodies"] == [f'{{"path": "/r/{i}", "got": {i}}}' for i in range(40)]
    assert all(latency > 0 for latency in answer["latencies"])
    assert answer["connections"] == server.connections == (40 if close else 4)
    assert answer["cpu_s"] >= 0 and answer["wall_s"] > 0


def test_client_reports_the_first_unexpected_answer():
    server = _serve(close=False)
    port = server.server_address[1]
    try:
        requests = [_post(port, "/ok", b"1"), _post(port, "/teapot", b"2")]
        answer = _http_client_run(
            {"port": port, "concurrency": 1, "requests": requests, "expect": 200, "keep_bodies": False}
        )
    finally:
        server.shutdown()
        server.server_close()
    assert answer["statuses"] == [200, 418]
    assert answer["unexpected"] == ['418 {"path": "/teapot", "got": 2}']
    assert answer["bodies"] is None


@pytest.mark.skipif(not os.path.isdir("/proc/self"), reason="reads /proc")
def test_cpu_meter_counts_a_process_that_starts_and_ends_inside_the_window():
    burn = "import time\nend = time.process_time() + 0.6\nwhile time.process_time() < end: pass"
    child: list[int] = []
    with CpuMeter({"child": lambda: child, "nobody": lambda: []}) as meter:
        proc = subprocess.Popen([sys.executable, "-c", burn])
        child.append(proc.pid)
        proc.wait()
    # At most its last sampling interval is missed; its interpreter's start-up adds some.
    assert 0.45 <= meter.seconds["child"] < 5
    assert meter.seconds["nobody"] == 0


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)  # pgbench connects on its own: the table must be committed
def test_pgbench_counts_every_transaction_it_reports():
    with connection.cursor() as cursor:
        cursor.execute("DROP TABLE IF EXISTS bench_test_pgbench; CREATE TABLE bench_test_pgbench (id bigserial)")
    try:
        figures = pgbench("INSERT INTO bench_test_pgbench DEFAULT VALUES;\n", seconds=1, clients=2, threads=1)
        with connection.cursor() as cursor:
            cursor.execute("SELECT count(*) FROM bench_test_pgbench")
            (rows,) = cursor.fetchone()
    finally:
        with connection.cursor() as cursor:
            cursor.execute("DROP TABLE bench_test_pgbench")
    assert figures["transactions"] == rows > 0
    assert figures["failed"] == 0
    assert figures["ops_per_s"] > 0 and 0 < figures["p50_ms"] <= figures["p99_ms"]
    assert (figures["clients"], figures["threads"], figures["seconds"]) == (2, 1, 1)
    assert figures["client_cpu_ms_per_op"] is not None


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_http_bench_measures_gunicorn_and_refuses_figures_for_wrong_answers(monkeypatch):
    monkeypatch.setenv("BENCH_GUNICORN_WORKERS", "2")
    notes = []
    with HttpBench(notes.append, clients=3) as http:
        ping = http.request("GET", "/api/v1/payments/ping")
        figures, bodies = http.run([ping] * 30, expect=200, keep_bodies=True)
        with pytest.raises(BenchError, match="30 of 30 requests answered other than 201"):
            http.run([ping] * 30, expect=201)
        server = http.server
    assert server.poll() is not None  # stopped on the way out
    assert "-c gunicorn.conf.py" in notes[0] and "--workers 2" in notes[0]
    assert figures["requests"] == len(bodies) == 30
    assert figures["gunicorn_workers"] == 2 and figures["clients"] == 3
    assert figures["ops_per_s"] > 0 and 0 < figures["p50_ms"] <= figures["p99_ms"]
    assert figures["server_cpu_ms_per_req"] > 0 and figures["client_cpu_ms_per_req"] is not None
    assert all(isinstance(body, dict) for body in bodies)


def test_summary_line_puts_the_ratios_beside_the_rate():
    line = summary_line(
        {"scenario": "wallet-debit-http:hot:no-key", "ops_per_s": 120.5, "p50_ms": 60.0, "p99_ms": 97.25}
        | {"vs_pgbench": 0.051, "server_cpu_ms_per_req": 9.8, "cpu_busy": 0.87, "lost_updates": 0, "x": 1}
    )
    assert line.split()[:4] == ["wallet-debit-http:hot:no-key", "120.5", "60", "97.25"]
    assert line.endswith("vs pgbench 0.051, server 9.8 ms CPU/req, cores busy 87%, lost 0")
