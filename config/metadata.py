"""`metadata`, as Stripe has it: up to 50 keys, each a string of 1 to 40 characters
without square brackets, each value a string (numbers and booleans are kept as sent) of
at most 500 characters. https://docs.stripe.com/metadata

The limits are Stripe's because the metadata may be sent on to Stripe (a charge's card
part), where a larger or nested one would fail only then; and they keep what a caller
can store on one row small (40,000 keys in a 1 MB body used to be accepted). Brackets
would break the form encoding Stripe's API takes (`metadata[key]=value`).
"""

from config.errors import InvalidRequest

MAX_KEYS = 50
MAX_KEY_LENGTH = 40
MAX_VALUE_LENGTH = 500


def metadata_problem(metadata) -> tuple[str | None, str] | None:
    """What is wrong with `metadata`, as (key, message): `key` is the offending key, or
    None when the problem is the whole object. None when it is fine."""
    if not isinstance(metadata, dict):
        return None, f"Must be an object of string keys and values, not {_kind(metadata)}."
    if len(metadata) > MAX_KEYS:
        return None, f"At most {MAX_KEYS} keys, not {len(metadata)}."
    for key, value in metadata.items():
        if not isinstance(key, str) or not 1 <= len(key) <= MAX_KEY_LENGTH:
            shown = key if len(str(key)) <= MAX_KEY_LENGTH else f"{str(key)[:MAX_KEY_LENGTH]}..."
            return None, f"Keys are 1 to {MAX_KEY_LENGTH} characters long: {shown!r} is {len(str(key))}."
        if "[" in key or "]" in key:
            return None, f"Keys may not contain square brackets: {key!r}."
        if isinstance(value, dict | list) or value is None:
            return key, f"Must be a string, not {_kind(value)}."
        if len(str(value)) > MAX_VALUE_LENGTH:
            return key, f"Values are at most {MAX_VALUE_LENGTH} characters long, not {len(str(value))}."
    return None


def metadata_validate(metadata, *, param: str = "metadata") -> dict:
    """Return `metadata` if it keeps to the limits above; else raise InvalidRequest (400)
    with `param` naming the field, or `<param>.<key>` for one value."""
    problem = metadata_problem(metadata)
    if problem is None:
        return metadata
    key, message = problem
    where = f"{param}.{key}" if key is not None else param
    raise InvalidRequest(f"{where}: {message}", param=where)


def _kind(value) -> str:
    return {dict: "an object", list: "an array", type(None): "null"}.get(type(value), type(value).__name__)
