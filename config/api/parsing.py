from rest_framework import serializers


def parse(serializer_class: type[serializers.Serializer], data, **context) -> dict:
    """Validate `data` with an Input serializer; raise a 400 (with param) if it is wrong."""
    if not isinstance(data, dict):
        raise serializers.ValidationError({"non_field_errors": ["The request body must be a JSON object."]})
    serializer = serializer_class(data=data, context=context)
    serializer.is_valid(raise_exception=True)
    return serializer.validated_data
