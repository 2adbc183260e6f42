"""Request fields, strict about JSON types: money as integers in minor units only, ISO 4217
currencies with a real list, object ids as UUID strings, counts as JSON integers, text as
JSON strings. DRF's own fields coerce ("3" -> 3, 123 -> "123"); a payments API answers a
wrong type with a 400 naming the field instead."""

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from config.currencies import MAX_AMOUNT, is_valid_currency
from config.metadata import MAX_KEY_LENGTH, MAX_KEYS, MAX_VALUE_LENGTH, metadata_problem


@extend_schema_field(OpenApiTypes.INT64)
class MinorUnitsField(serializers.Field):
    """A JSON integer in the currency's minor unit. Floats, strings and booleans are refused
    (a float never touches money); so is anything below `min_value` or above 10^12."""

    default_error_messages = {
        "invalid": "Must be an integer in minor units (e.g. 1000 for 10.00), not {kind}.",
        "min_value": "Must be at least {min_value}.",
        "max_value": "Must be at most {max_value}.",
    }

    def __init__(self, *, min_value: int = 1, max_value: int = MAX_AMOUNT, **kwargs):
        self.min_value = min_value
        self.max_value = max_value
        super().__init__(**kwargs)

    def to_internal_value(self, data):
        if isinstance(data, bool) or not isinstance(data, int):
            self.fail("invalid", kind=type(data).__name__ if data is not None else "null")
        if data < self.min_value:
            self.fail("min_value", min_value=self.min_value)
        if data > self.max_value:
            self.fail("max_value", max_value=self.max_value)
        return data

    def to_representation(self, value):
        return int(value)


@extend_schema_field({"type": "string", "pattern": "^[A-Za-z]{3}$", "example": "usd"})
class CurrencyField(serializers.Field):
    """An ISO 4217 code, either case on input, lowercase on output (as Stripe)."""

    default_error_messages = {"invalid": "Unknown or malformed ISO 4217 currency code: {value!r}."}

    def to_internal_value(self, data):
        if not isinstance(data, str) or not is_valid_currency(data):
            self.fail("invalid", value=data)
        return data.lower()

    def to_representation(self, value):
        return str(value).lower()


class IdField(serializers.UUIDField):
    """An object's id in a request body: a UUID, as a JSON string. DRF's UUIDField also
    takes a JSON integer (as UUID(int=...)), which would turn `"customer": 123` into a
    404 for a made-up id instead of a 400 for a malformed field."""

    def to_internal_value(self, data):
        if not isinstance(data, str):
            self.fail("invalid", value=data)
        return super().to_internal_value(data)


class StrictIntegerField(serializers.IntegerField):
    """An IntegerField that takes a JSON integer only, as MinorUnitsField does for money:
    DRF's would take "3", 3.0 or true as 3."""

    default_error_messages = {"invalid": "Must be an integer, not {kind}."}

    def to_internal_value(self, data):
        if isinstance(data, bool) or not isinstance(data, int):
            self.fail("invalid", kind=type(data).__name__ if data is not None else "null")
        return super().to_internal_value(data)


class StrictCharField(serializers.CharField):
    """A CharField that accepts JSON strings only: numbers, booleans, lists and objects
    are refused rather than turned into text."""

    default_error_messages = {"invalid": "Must be a string, not {kind}."}

    def to_internal_value(self, data):
        if not isinstance(data, str):
            self.fail("invalid", kind=type(data).__name__)
        return super().to_internal_value(data)


@extend_schema_field(
    {
        "type": "object",
        "maxProperties": MAX_KEYS,
        "description": f"Up to {MAX_KEYS} keys of 1 to {MAX_KEY_LENGTH} characters (no square brackets), "
        f"string values of at most {MAX_VALUE_LENGTH} characters, as Stripe's metadata.",
        "additionalProperties": {"type": "string", "maxLength": MAX_VALUE_LENGTH},
        "example": {"order_ref": "A-1001"},
    }
)
class MetadataField(serializers.Field):
    """`metadata` with Stripe's limits (config.metadata): a 400 names the field, or
    `metadata.<key>` when one value is wrong."""

    def to_internal_value(self, data):
        problem = metadata_problem(data)
        if problem is None:
            return data
        key, message = problem
        # Keyed by the offending key, DRF's error detail becomes the path metadata.<key>.
        raise serializers.ValidationError({key: [message]} if key is not None else [message])

    def to_representation(self, value):
        return value
