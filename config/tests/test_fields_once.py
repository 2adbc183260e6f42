"""Fields built once per class still belong to one serializer each (config.api.fields_once)."""

import pytest
from rest_framework import serializers

from config.api.fields_once import fields_once
from config.api.parsing import parse


class Item(serializers.Serializer):
    sku = serializers.CharField()


class Order(serializers.Serializer):
    name = serializers.CharField(max_length=5)
    tags = serializers.ListField(child=serializers.CharField(max_length=3), required=False)
    items = Item(many=True, required=False)
    note = serializers.SerializerMethodField()

    def get_note(self, obj):
        return self.context.get("note")


def test_each_instance_binds_its_own_copies_of_the_fields():
    cls = fields_once(Order)
    first, second = cls(context={"note": "a"}), cls(context={"note": "b"})
    for name in ("name", "tags", "items", "note"):
        assert first.fields[name] is not second.fields[name]
        assert first.fields[name].parent is first and second.fields[name].parent is second
    # Fields bound below a field (a list's child, a nested serializer's) are not shared either.
    assert first.fields["tags"].child is not second.fields["tags"].child
    assert first.fields["items"].child is not second.fields["items"].child
    assert first.to_representation({"name": "x"})["note"] == "a"
    assert second.to_representation({"name": "x"})["note"] == "b"


def test_parse_validates_and_names_errors_as_drf_does():
    assert parse(Order, {"name": "ok", "tags": ["ab"], "items": [{"sku": "1"}]}) == {
        "name": "ok",
        "tags": ["ab"],
        "items": [{"sku": "1"}],
    }
    with pytest.raises(serializers.ValidationError) as raised:
        parse(Order, {"name": "toolong", "tags": ["abcd"], "items": [{}]})
    assert set(raised.value.detail) == {"name", "tags", "items"}
    # A second parse of the same class is not affected by the first one's errors.
    assert parse(Order, {"name": "ok"}) == {"name": "ok"}
    assert fields_once(Order) is fields_once(Order)
