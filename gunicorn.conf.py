"""gunicorn settings for Paydesk's web processes: gunicorn reads ./gunicorn.conf.py by
default, and the Dockerfile and docker-compose.yml name it too. Command-line options
(bind, workers, timeout) still apply on top of it.

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

import gunicorn.util

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
