"""gunicorn, as the image runs it (gunicorn.conf.py), on a free loopback port: a request
it refuses itself (a request line over 4094 bytes: 414; a header over 8190 bytes or more
than 100 headers: 431; a malformed request line: 400) is answered in API.md's JSON error
shape, not with gunicorn's HTML page; a request within the limits reaches Django."""

import json
import os
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def gunicorn_port():
    port = _free_port()
    env = {
        **os.environ,
        "DEBUG": "false",
        "SECRET_KEY": "gunicorn-test-" + uuid.uuid4().hex,
        "JWT_SECRET": "gunicorn-test-" + uuid.uuid4().hex,
        "ALLOWED_HOSTS": "127.0.0.1",
        "SECURE_SSL_REDIRECT": "false",
    }
    cmd = [
        str(Path(sys.executable).with_name("gunicorn")),
        "config.wsgi:application",
        "--config",
        "gunicorn.conf.py",
        "--bind",
        f"127.0.0.1:{port}",
        "--workers",
        "1",
        "--no-control-socket",  # several gunicorns on one machine would share its default path
    ]
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 30
        while b'"ok":true' not in _exchange(port, _get("/api/v1/payments/ping"), quiet=True):
            assert proc.poll() is None, proc.stdout.read().decode()[-2000:]
            assert time.monotonic() < deadline, "gunicorn did not answer within 30 s"
            time.sleep(0.2)
        yield port
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def _get(target: str, headers: list[tuple[str, str]] = ()) -> bytes:
    lines = [f"GET {target} HTTP/1.1", "Host: 127.0.0.1", "Connection: close", *(f"{k}: {v}" for k, v in headers)]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def _exchange(port: int, request: bytes, *, quiet: bool = False) -> bytes:
    """Send raw bytes, return everything the server answers before it closes."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
            sock.sendall(request)
            received = b""
            while chunk := sock.recv(65536):
                received += chunk
            return received
    except OSError:
        if quiet:
            return b""
        raise


def _response(raw: bytes) -> tuple[int, dict, bytes]:
    head, _, body = raw.partition(b"\r\n\r\n")
    status_line, *header_lines = head.decode("latin1").split("\r\n")
    headers = {k.lower(): v.strip() for k, _, v in (line.partition(":") for line in header_lines)}
    return int(status_line.split()[1]), headers, body


def assert_json_error(raw: bytes, status: int) -> dict:
    got, headers, body = _response(raw)
    assert got == status, raw[:500]
    assert headers["content-type"] == "application/json"
    assert int(headers["content-length"]) == len(body)
    error = json.loads(body)["error"]
    assert set(error) == {"type", "code", "message", "param"}
    assert (error["type"], error["code"], error["param"]) == ("invalid_request_error", "invalid_request_error", None)
    assert error["message"]
    return error


def test_an_over_long_query_string_is_a_json_414(gunicorn_port):
    raw = _exchange(gunicorn_port, _get("/api/v1/payments?order_id=" + "x" * 5000))
    assert "4094 bytes" in assert_json_error(raw, 414)["message"]


def test_a_100_kb_header_is_a_json_431(gunicorn_port):
    raw = _exchange(gunicorn_port, _get("/api/v1/payments", [("Authorization", "Bearer " + "x" * 100_000)]))
    assert "8190 bytes" in assert_json_error(raw, 431)["message"]


def test_more_than_100_headers_is_a_json_431(gunicorn_port):
    raw = _exchange(gunicorn_port, _get("/api/v1/payments", [(f"X-H{i}", "v") for i in range(101)]))
    assert_json_error(raw, 431)


def test_a_malformed_request_line_is_a_json_400(gunicorn_port):
    assert_json_error(_exchange(gunicorn_port, b"NOT A REQUEST LINE\r\n\r\n"), 400)


def test_requests_within_the_limits_reach_django(gunicorn_port):
    """A request line just under 4094 bytes and an 8 KB header: Django answers them."""
    target = "/api/v1/payments/ping?pad="
    target += "x" * (4094 - len(f"GET {target} HTTP/1.1") - 1)
    raw = _exchange(gunicorn_port, _get(target, [("X-Big", "x" * 8000)] + [(f"X-H{i}", "v") for i in range(90)]))
    status, headers, body = _response(raw)
    assert (status, json.loads(body)) == (200, {"ok": True}), raw[:500]
    assert headers["x-request-id"]  # Django's middleware answered, not gunicorn


SERVER_VARIABLES = ("WEB_CONCURRENCY", "GUNICORN_THREADS", "GUNICORN_BIND", "GUNICORN_TIMEOUT", "PORT")


def _resolved(**env: str) -> dict[str, str]:
    """gunicorn's own reading of gunicorn.conf.py (--print-config), under `env`."""
    base = {k: v for k, v in os.environ.items() if k not in SERVER_VARIABLES}
    result = subprocess.run(
        [str(Path(sys.executable).with_name("gunicorn")), "--print-config", "config.wsgi:application"],
        cwd=ROOT,
        env={**base, **env},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    lines = (line.partition("=") for line in result.stdout.splitlines())
    return {name.strip(): value.strip() for name, sep, value in lines if sep}


def test_the_measured_server_shape_and_its_overrides():
    """What the image runs with no options (gunicorn.conf.py's docstring says why), and
    the environment changing it for another machine."""
    default = _resolved()
    assert (default["workers"], default["threads"], default["worker_class"]) == ("4", "2", "gthread")
    assert (default["bind"], default["timeout"], default["limit_request_line"]) == ("['0.0.0.0:8000']", "60", "4094")
    other = _resolved(WEB_CONCURRENCY="5", GUNICORN_THREADS="1", GUNICORN_BIND="127.0.0.1:9000")
    assert (other["workers"], other["threads"], other["worker_class"]) == ("5", "1", "sync")
    assert other["bind"] == "['127.0.0.1:9000']"
    assert _resolved(PORT="5000")["bind"] == "['0.0.0.0:5000']"
