import re

from django.http import QueryDict
from rest_framework import serializers

from config.api.fields import MetadataField, MinorUnitsField
from config.api.fields_once import fields_once
from config.api.parsers import json_loads
from config.errors import InvalidRequest

# Fields whose value is JSON structure: in a form they are JSON text (config.api.renderers
# renders them as a textarea for it).
JSON_FIELDS = (
    serializers.JSONField,
    serializers.ListField,
    serializers.DictField,
    serializers.ListSerializer,
    serializers.Serializer,
    MetadataField,
)
NUMBER_FIELDS = (serializers.IntegerField, MinorUnitsField)
_INTEGER = re.compile(r"[+-]?\d+")


def parse(serializer_class: type[serializers.Serializer], data, **context) -> dict:
    """Validate `data` with an Input serializer; raise a 400 (with param) if it is wrong.

    A form post (the browsable API's HTML form) is read as the JSON body it stands for
    (`form_as_json`), so an endpoint takes the same thing either way."""
    serializer_class = fields_once(serializer_class)
    if isinstance(data, QueryDict):
        data = form_as_json(serializer_class(context=context), data)
    if not isinstance(data, dict):
        raise serializers.ValidationError({"non_field_errors": ["The request body must be a JSON object."]})
    serializer = serializer_class(data=data, context=context)
    serializer.is_valid(raise_exception=True)
    return serializer.validated_data


def form_as_json(serializer: serializers.Serializer, form: QueryDict) -> dict:
    """The JSON body a form stands for, field by field of the Input serializer, whose
    fields stay strict about JSON types: a blank input of an optional field is an omitted
    field, digits in a number field are that integer, and the text in a JSON field (a
    list, an object, metadata) is parsed as JSON. Everything else is the text typed, and
    names the form has but the serializer does not are dropped (the CSRF token)."""
    body = {}
    for name, field in serializer.fields.items():
        if field.read_only or name not in form:
            continue
        value = form.get(name)
        if not isinstance(value, str):  # an uploaded file: the field says what it makes of it
            body[name] = value
        elif isinstance(field, serializers.ListField) and len(form.getlist(name)) > 1:
            body[name] = form.getlist(name)  # repeated inputs (name=a&name=b): the list itself
        elif value.strip() == "" and not field.required:
            continue
        elif isinstance(field, NUMBER_FIELDS) and _INTEGER.fullmatch(value.strip()):
            body[name] = int(value)
        elif isinstance(field, JSON_FIELDS):
            try:
                body[name] = json_loads(value, max_bytes=None)
            except InvalidRequest as exc:
                raise InvalidRequest(f"{name}: must be JSON here. {exc.message}", param=name)
        else:
            body[name] = value
    return body
