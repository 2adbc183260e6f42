"""Serializer fields worked out once per class, not once per request.

DRF builds a serializer's fields on every instance: a plain Serializer deep-copies its
declared fields (each one constructed again from its arguments), and a ModelSerializer
also rebuilds the model's fields (field classes, choices, validators, source lookups).
For a payment's input that is about 0.2 ms of every create, and for a six-field wallet
response about as much, more than the rest of rendering it. A class's fields never
change between requests, so `FieldsOnce` builds them once per class (what `get_fields()`
gives the first time) and hands each instance shallow copies to bind, so a field still
sees its own serializer and context (SerializerMethodField, fields that read `context`)
and validates with validators of its own. A field with fields bound below it, a nested
serializer or a ListField's or DictField's child, is deep-copied as DRF does.

Used by config.api.outputs.ModelOut (every response shape) and config.api.parsing.parse
(every request body).
"""

import copy
from functools import cache

from rest_framework import serializers

_NESTED = (serializers.BaseSerializer, serializers.ListField, serializers.DictField)


class FieldsOnce:
    def get_fields(self):
        cls = type(self)
        prototypes = cls.__dict__.get("_field_prototypes")
        if prototypes is None:
            prototypes = super().get_fields()
            cls._field_prototypes = prototypes
        return {
            name: copy.deepcopy(field) if isinstance(field, _NESTED) else copy.copy(field)
            for name, field in prototypes.items()
        }


@cache
def fields_once(serializer_class: type[serializers.Serializer]) -> type[serializers.Serializer]:
    """`serializer_class` with FieldsOnce: the same fields, validation and errors."""
    if issubclass(serializer_class, FieldsOnce):
        return serializer_class
    return type(serializer_class.__name__, (FieldsOnce, serializer_class), {"__module__": serializer_class.__module__})
