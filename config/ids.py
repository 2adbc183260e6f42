import uuid

from config.errors import NotFound


def parse_uuid(value, *, what: str = "object") -> uuid.UUID:
    """A UUID from a URL or body; anything malformed is simply "not found" (404)."""
    try:
        return value if isinstance(value, uuid.UUID) else uuid.UUID(str(value))
    except (TypeError, ValueError, AttributeError):
        raise NotFound(f"No such {what}: {value!r}.")
