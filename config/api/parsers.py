"""The project's JSON parser: DRF's, plus one rule PostgreSQL imposes.

PostgreSQL cannot store U+0000 in text or jsonb: a NUL anywhere in a body (in
`metadata`, say) would reach the database and fail there as a DataError, a 500. The
parser refuses it up front as a 400 invalid_request_error naming where it was.
"""

from rest_framework import parsers

from config.errors import InvalidRequest


def find_nul(value, path: str = "") -> str | None:
    """Where a string or key containing U+0000 is ("" for the top level), or None.
    Walks nested dicts and lists."""
    stack = [(value, path)]
    while stack:
        item, where = stack.pop()
        if isinstance(item, str):
            if "\x00" in item:
                return where
        elif isinstance(item, dict):
            for key, sub in item.items():
                sub_path = f"{where}.{key}" if where else str(key)
                if isinstance(key, str) and "\x00" in key:
                    return sub_path.replace("\x00", "\\u0000")
                stack.append((sub, sub_path))
        elif isinstance(item, list):
            stack.extend((sub, f"{where}[{index}]") for index, sub in enumerate(item))
    return None


def refuse_nul(value) -> None:
    """Raise InvalidRequest (400, `param` = where) if any string or key holds U+0000."""
    where = find_nul(value)
    if where is not None:
        raise InvalidRequest(
            "Strings may not contain the NUL character (\\u0000)" + (f": found in {where}." if where else "."),
            param=where or None,
        )


class JSONParser(parsers.JSONParser):
    def parse(self, stream, media_type=None, parser_context=None):
        data = super().parse(stream, media_type, parser_context)
        refuse_nul(data)
        return data
