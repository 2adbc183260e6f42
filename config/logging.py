"""Structured (JSON) logs with the request id, scrubbed of secrets.

API keys, JWTs, Stripe keys, webhook secrets and card numbers never reach a log line,
whoever logs them: the filter rewrites the message and its arguments.
"""

import contextvars
import json
import logging
import re

request_id_var: contextvars.ContextVar[str | None] = contextvars.ContextVar("request_id", default=None)

_SECRET_PATTERNS = [
    (re.compile(r"pd_(test|live)_[A-Za-z0-9_\-]{6,}"), r"pd_\1_[REDACTED]"),
    (re.compile(r"\beyJ[A-Za-z0-9_\-]+\.[A-Za-z0-9_\-]+\.[A-Za-z0-9_\-]*"), "[REDACTED_JWT]"),
    (re.compile(r"\b(sk|rk|pk)_(test|live)_[A-Za-z0-9]{6,}"), r"\1_\2_[REDACTED]"),
    # Endpoint secrets are "whsec_" + token_urlsafe, whose alphabet includes "-".
    (re.compile(r"\bwhsec_[A-Za-z0-9_\-]{6,}"), "whsec_[REDACTED]"),
    (re.compile(r"(?i)(bearer\s+)[^\s\"']+"), r"\1[REDACTED]"),
    (re.compile(r"(v1=)[0-9a-f]{16,}"), r"\1[REDACTED]"),
]


# 13-19 digits, optionally grouped by spaces or dashes, not part of a longer number or a
# decimal fraction; redacted when they pass the Luhn check, as card numbers do.
_PAN = re.compile(r"(?<![\d.])(?:\d[ -]?){12,18}\d(?![\d])")


def _luhn_ok(digits: str) -> bool:
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = int(ch)
        if i % 2:
            d = d * 2 - 9 if d > 4 else d * 2
        total += d
    return total % 10 == 0


def _redact_pan(match: re.Match) -> str:
    digits = re.sub(r"[ -]", "", match.group(0))
    return "[REDACTED_PAN]" if _luhn_ok(digits) else match.group(0)


def redact(text: str) -> str:
    for pattern, replacement in _SECRET_PATTERNS:
        text = pattern.sub(replacement, text)
    return _PAN.sub(_redact_pan, text)


class RedactSecretsFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # a broken format string must not lose the log line
            message = str(record.msg)
        record.msg = redact(message)
        record.args = None
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = redact(record.exc_text)
        return True


class RequestIdFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        record.request_id = request_id_var.get()
        return True


_STANDARD = set(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {"message", "asctime", "request_id"}


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        payload = {
            "time": self.formatTime(record, "%Y-%m-%dT%H:%M:%S%z"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            "request_id": getattr(record, "request_id", None),
        }
        for key, value in record.__dict__.items():
            if key not in _STANDARD and not key.startswith("_"):
                payload[key] = value if isinstance(value, (str, int, float, bool, type(None))) else str(value)
        if record.exc_text or record.exc_info:
            payload["exc"] = record.exc_text or self.formatException(record.exc_info)
        return redact(json.dumps(payload, default=str))
