"""The base of every response shape: a ModelSerializer whose fields are worked out once
per class, not once per response (config.api.fields_once)."""

from rest_framework import serializers

from config.api.fields_once import FieldsOnce


class ModelOut(FieldsOnce, serializers.ModelSerializer):
    pass
