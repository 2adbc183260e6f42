"""The base of every response shape: a ModelSerializer whose fields are worked out once
per class, not once per response.

DRF's ModelSerializer rebuilds its fields from the model on every instance (field
classes, choices, validators, source lookups): about 0.2 ms for a six-field wallet, on
every response, more than the rest of rendering it. A response shape's fields never
change between responses, so `ModelOut` builds them once per class (the declared fields
and the model's, as `get_fields()` gives them) and gives each instance shallow copies to
bind, so a field still sees its own serializer and context (SerializerMethodField,
fields that read `context`). A nested serializer field is deep-copied, as DRF does, since
its own fields are bound below it.
"""

import copy

from rest_framework import serializers


class ModelOut(serializers.ModelSerializer):
    def get_fields(self):
        cls = type(self)
        prototypes = cls.__dict__.get("_field_prototypes")
        if prototypes is None:
            prototypes = super().get_fields()
            cls._field_prototypes = prototypes
        return {
            name: copy.deepcopy(field) if isinstance(field, serializers.BaseSerializer) else copy.copy(field)
            for name, field in prototypes.items()
        }
