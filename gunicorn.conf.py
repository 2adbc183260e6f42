"""gunicorn settings for Paydesk's web processes: gunicorn reads ./gunicorn.conf.py by
default, and the Dockerfile and docker-compose.yml name it too, with no other options.
Command-line options would still apply on top of it (the tests use that).

Server shape: 4 workers x 2 threads (gthread), for a 2-core machine. Environment:
WEB_CONCURRENCY (workers), GUNICORN_THREADS (1: sync workers), GUNICORN_BIND (else
0.0.0.0:$PORT, else 0.0.0.0:8000), GUNICORN_TIMEOUT (60 s), GUNICORN_KEEPALIVE (5 s;
behind a load balancer, set it above the balancer's idle timeout), GUNICORN_ACCESS_LOG
("-": stdout, the default; empty: none).

Measured again on 2026-12-07, on a quiet 2-core machine of this project's kind, with the
ledger's hot path as it is now (a keyed debit in 6 statements) and `manage.py bench`'s
HTTP harness (8 keep-alive clients, a fresh database each run, configurations
interleaved; figures per run, `vs` the ratio to pgbench's transaction in the same run):

    workers x threads          2 x 4 (before)          4 x 2 (now)             8 x 1 sync (once)
    debit, hot, keyed          274, 263, 312/s         317, 335, 329/s         285/s
                               0.14, 0.13, 0.16 vs     0.16, 0.17, 0.17 vs     0.15 vs
    debit, hot, no key         287, 353, 339/s         375, 442, 426/s         362/s
                               0.15, 0.17, 0.17 vs     0.19, 0.22, 0.22 vs     0.18 vs
    debit, spread, keyed       375, 429, 435/s         401, 429, 453/s         368/s
    debit, spread, no key      489, 552, 551/s         564, 577, 559/s         504/s
    wallet read                1,488, 1,591/s          1,566, 1,450/s
    wallet charge, keyed       244, 241/s              239, 255/s
    wallet charge, no key      304, 318/s              334, 350/s

- The hot wallet's debits queue on its row, and the thread holding the row's lock waits
  for its process's GIL after each of its round trips. Two threads per process rather
  than four halve the threads it can wait behind: hot debits gain about 16% keyed and
  27% without a key, and the cores are busier (75-79% against 57-70%).
- Everything else is the same or better, and the machine keeps 8 threads (so 8
  PostgreSQL connections) in all, for requests that wait seconds on a provider.
- A fourth pair, later, with the machine slower (pgbench 1,780/s): hot keyed 243 against
  284/s, no key 289 against 309/s.
- 8 sync workers avoid sharing a GIL, but close every connection after its response
  (sync workers keep none alive), which costs more than it saves. 8 gthread workers of
  one thread (kept alive, no GIL shared) ran as 4 x 2 did, interleaved three times (hot
  keyed 0.155-0.166 of pgbench against 0.157-0.168), with twice the processes' memory.

The first measurement, which chose 2 x 4 before, on this project's 2-core development
machine: PostgreSQL 15 and Redis on the same box, DEBUG off, the access log on,
REDIS_URL set (the throttle counts in Redis), 8 client threads of a small keep-alive
HTTP client against one merchant with 8 funded wallets (one each), 10-15 s per run after
a warm-up, configurations interleaved, 3 to 12 runs each; the debit as the ledger ran
it then (18 statements, see wallets/tests/test_statement_budget.py). The box was shared with other engineers' test
runs the whole time (load average 6 on 2 cores), so absolute figures are low and noisy;
medians (min-max):

    workers x threads   GET /wallets/{id}                  POST /wallets/{id}/debit, fresh key
                        req/s          p50  p99  CPU/req   req/s        p50   p99  CPU/req
    2 x 1 sync          100 ( 77-128)   89  144   4.6      25 (18-35)   298   477   15.8
    3 x 1 sync           94 ( 59-130)   83  133   5.3      25 (16-34)   317   492   16.6
    4 x 1 sync          102 ( 94-135)   77  157   5.6      24 (22-38)   314   573   17.5
    5 x 1 sync          105 ( 86-126)   76  135   5.8      28 (21-34)   274   529   17.7
    2 x 2 gthread       175 (135-269)   36  141   4.1      26 (20-33)   301   605   16.0
    2 x 4 gthread       200 ( 72-277)   33  124   4.2      25 (17-36)   308   721   16.3
    3 x 2 gthread       153 (109-218)   47  156   5.1      24 (20-30)   315   692   17.2
    3 x 4 gthread       178 (110-330)   39  128   5.0      25 (18-30)   291   825   16.2
    4 x 2 gthread       112 (104-153)   53  224   5.2      22 (20-37)   324   828   17.6
    (latencies in ms; CPU/req: ms of CPU the gunicorn workers spent per request)

What those figures said (4 x 2's low reads there did not show again on the quiet machine
above, where it reads as fast as 2 x 4):
- Reads: every gthread shape with 2 or 3 workers serves 1.5-2x the requests of any sync
  one, at half the latency. Sync workers close the connection after each response, so
  every request pays a new connection; gthread keeps it alive, and its threads overlap
  one request's database round trips with another's Python. More sync workers do not
  help: past 2 processes on 2 cores they only take turns.
- Debits: about 25/s whatever the shape. Every debit of a merchant locks that merchant's
  balance account until its commit, so they run one after another, and the server's
  shape cannot change that (the ledger's statements and the commit's WAL flush can).
  More threads raise the debit p99 a little: a thread holding that lock waits for its
  process's GIL behind the others.
- 2 workers, one Python process per core (PostgreSQL needs the cores too), give the
  best reads and the least CPU per read. Among those, 4 threads rather than 2: the
  read figures are at least as good, and what this measurement does not exercise, a
  payment or charge that waits on a provider's HTTP API for seconds, holds one of 8
  threads rather than one of 4. The price is the debit p99 (721 ms against 605 ms with
  2 threads, on this overloaded box).
Each thread keeps one PostgreSQL connection (CONN_MAX_AGE): workers x threads per
instance, 8 here. Measure again on a machine of another size: WEB_CONCURRENCY = twice its
cores, GUNICORN_THREADS = 2 is the starting point.

Request limits, set on purpose. gunicorn refuses a request over them before Django sees
it: a request line over `limit_request_line` is a 414, a header over
`limit_request_field_size` or more than `limit_request_fields` headers a 431.

- Request line 4094 bytes: the longest Paydesk URL is a list filtered by a 255-character
  order_id, well under 1 KB; admin changelist filters fit too.
- 100 headers of at most 8190 bytes each: the largest header a client sends on purpose
  is `Authorization` with a NextAuth session token (JWE, a few KB) or the admin's
  `Cookie`; 8 KB per header is also what common proxies allow (nginx's default).

gunicorn answers those refusals with its own HTML page, and API.md promises JSON in the
error shape, never an HTML page. A Django-level limit cannot help: whatever limit gunicorn
has, a longer request is refused by gunicorn first. So gunicorn's error writer is
replaced below with one that writes API.md's error shape (status and reason unchanged):
gunicorn calls `gunicorn.util.write_error` for every request it refuses itself, and the
replacement is installed in the master, before the workers fork. Tested against a real
gunicorn in config/tests/test_gunicorn.py; check it when upgrading gunicorn (pinned in
requirements.txt).
"""

import json
import os

import gunicorn.util

bind = [os.environ.get("GUNICORN_BIND") or f"0.0.0.0:{os.environ.get('PORT') or 8000}"]
workers = int(os.environ.get("WEB_CONCURRENCY") or 4)
threads = int(os.environ.get("GUNICORN_THREADS") or 2)
worker_class = "gthread" if threads > 1 else "sync"
# Above the longest request; IDEMPOTENCY_IN_FLIGHT_LEASE (120 s) must stay above this.
timeout = int(os.environ.get("GUNICORN_TIMEOUT") or 60)
keepalive = int(os.environ.get("GUNICORN_KEEPALIVE") or 5)
accesslog = os.environ.get("GUNICORN_ACCESS_LOG", "-") or None

limit_request_line = 4094
limit_request_fields = 100
limit_request_field_size = 8190

_MESSAGES = {
    414: f"The request line (method, URL and query string) is longer than {limit_request_line} bytes.",
    431: (
        f"The request headers are too large: at most {limit_request_fields} headers "
        f"of at most {limit_request_field_size} bytes each."
    ),
}


def error_type(status: int) -> str:
    """API.md's `type` for a status gunicorn answers with itself."""
    if status == 403:
        return "permission_error"
    return "invalid_request_error" if status < 500 else "api_error"


def write_json_error(sock, status_int: int, reason: str, mesg: str) -> None:
    """gunicorn.util.write_error's signature and response, with a JSON body."""
    type_ = error_type(status_int)
    if status_int >= 500:
        message = "An unexpected error occurred."
    else:
        message = _MESSAGES.get(status_int) or mesg or reason
    body = json.dumps({"error": {"type": type_, "code": type_, "message": message, "param": None}}).encode()
    head = (
        f"HTTP/1.1 {status_int} {reason}\r\n"
        "Connection: close\r\n"
        "Content-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n"
        "\r\n"
    )
    gunicorn.util.write_nonblock(sock, head.encode("latin1") + body)


gunicorn.util.write_error = write_json_error
