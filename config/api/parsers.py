"""The project's one JSON parser: every JSON request body becomes data here, the API's
(through the DRF parser below) and the inbound webhooks' (after their signature checks).

It refuses, as a 400 invalid_request_error, what would otherwise fail later as a 500:
- a body over a size limit, before it is decoded: WEBHOOK_MAX_BODY_BYTES for webhooks,
  and for the API Django's own DATA_UPLOAD_MAX_MEMORY_SIZE (2.5 MB unless set; Django
  enforces it too when DRF reads `request.body`);
- nesting deeper than MAX_DEPTH: about a thousand levels (a 2 KB body) raise
  RecursionError in json itself, and anything deep enough recurses again wherever the
  data is walked or dumped (the idempotency hash, the database adapter);
- NaN and Infinity, which are not JSON and which PostgreSQL's jsonb refuses;
- U+0000 in any string or key: PostgreSQL cannot store it in text or jsonb, so a NUL
  (in `metadata`, say) would fail there as a DataError. `param` says where it was.
"""

import json

from django.conf import settings
from rest_framework import parsers

from config.errors import InvalidRequest

# Stripe's deepest events nest about 12 levels and our API bodies 4: 64 refuses only what
# no client sends, and stays far below Python's recursion limit (1000) however the data
# is walked later.
MAX_DEPTH = 64


def json_loads(raw: str | bytes, *, max_bytes: int | None, encoding: str = "utf-8"):
    """`raw` as JSON data, or InvalidRequest (400) naming what is wrong with it.
    `max_bytes` None means no size limit (DATA_UPLOAD_MAX_MEMORY_SIZE = None)."""
    if max_bytes is not None and len(raw) > max_bytes:
        raise InvalidRequest(f"The request body is larger than {max_bytes} bytes.")
    if isinstance(raw, bytes):
        try:
            raw = raw.decode(encoding)
        except (UnicodeDecodeError, LookupError):
            raise InvalidRequest(f"The request body is not {encoding} text.")
    try:
        data = json.loads(raw, parse_constant=_refuse_constant)
    except RecursionError:
        raise _too_deep()
    except ValueError as exc:
        raise InvalidRequest(f"Malformed JSON: {exc}")
    refuse_unstorable(data)
    return data


def _refuse_constant(name: str):
    raise InvalidRequest(f"{name} is not a JSON number.")


def _too_deep() -> InvalidRequest:
    return InvalidRequest(f"The JSON body is nested deeper than {MAX_DEPTH} levels.")


def find_unstorable(value, path: str = "") -> tuple[str, str] | None:
    """The first problem with parsed JSON as (what, where): "depth" when objects and lists
    nest deeper than MAX_DEPTH (the top-level value is depth 1), "nul" for a string or key
    holding U+0000. `where` is the path ("" for the top level). Iterative, so it never
    recurses itself."""
    stack = [(value, path, 1)]
    while stack:
        item, where, depth = stack.pop()
        if isinstance(item, str):
            if "\x00" in item:
                return "nul", where
        elif isinstance(item, dict | list):
            if depth > MAX_DEPTH:
                return "depth", where
            if isinstance(item, dict):
                for key, sub in item.items():
                    sub_path = f"{where}.{key}" if where else str(key)
                    if isinstance(key, str) and "\x00" in key:
                        return "nul", sub_path.replace("\x00", "\\u0000")
                    stack.append((sub, sub_path, depth + 1))
            else:
                stack.extend((sub, f"{where}[{index}]", depth + 1) for index, sub in enumerate(item))
    return None


def refuse_unstorable(value) -> None:
    """Raise InvalidRequest (400) for nesting deeper than MAX_DEPTH, or for U+0000 in any
    string or key (with `param` = where)."""
    problem = find_unstorable(value)
    if problem is None:
        return
    what, where = problem
    if what == "depth":
        raise _too_deep()
    raise InvalidRequest(
        "Strings may not contain the NUL character (\\u0000)" + (f": found in {where}." if where else "."),
        param=where or None,
    )


class JSONParser(parsers.JSONParser):
    """DRF's JSON parser with the bounds above (read at most one byte past the limit)."""

    def parse(self, stream, media_type=None, parser_context=None):
        parser_context = parser_context or {}
        encoding = parser_context.get("encoding", settings.DEFAULT_CHARSET)
        limit = settings.DATA_UPLOAD_MAX_MEMORY_SIZE
        raw = stream.read() if limit is None else stream.read(limit + 1)
        return json_loads(raw, max_bytes=limit, encoding=encoding)
