"""The browsable API, its forms built from what an endpoint takes.

DRF builds the HTML form, and the raw form's JSON template, from `get_serializer()`: on a
ListAPIView that is the view's output serializer, so the form for POST /api/v1/payments
asked for `id`, `status` and `created_at` and could never succeed, and a plain APIView
got no HTML form at all. Every view here parses its body with its nested `Input`
serializer (config.api.parsing.parse): the forms for POST, PUT and PATCH are built from
that, and a view without one shows only the raw form, with an empty body. The HTML form
posts form data, which `parse` reads as the JSON body it stands for."""

import json

from rest_framework import renderers, serializers
from rest_framework.fields import empty
from rest_framework.request import is_form_media_type, override_method
from rest_framework.utils.field_mapping import ClassLookupDict

from config.api.fields import MetadataField, MinorUnitsField

WRITE_METHODS = ("POST", "PUT", "PATCH")
_JSON_TEXT = {"base_template": "textarea.html", "placeholder": "JSON", "rows": 3}


class InputFormRenderer(renderers.HTMLFormRenderer):
    """Lists, objects and metadata as a textarea for their JSON (DRF shows "not supported
    in HTML input", so a form could not send a required list); money as a number."""

    default_style = ClassLookupDict(
        {
            **renderers.HTMLFormRenderer.default_style.mapping,
            serializers.ListField: _JSON_TEXT,
            serializers.DictField: _JSON_TEXT,
            serializers.ListSerializer: _JSON_TEXT,
            MetadataField: _JSON_TEXT,
            MinorUnitsField: {"base_template": "input.html", "input_type": "number"},
        }
    )


def input_serializer(view, method: str, *, context=None) -> serializers.Serializer | None:
    """The view's `Input`, unbound, each optional field showing its default; None if the
    view takes no body for `method`."""
    if method not in WRITE_METHODS:
        return None
    input_class = getattr(view, "Input", None)
    if input_class is None:
        return None
    serializer = input_class(context=context or {})
    for field in serializer.fields.values():
        if not field.required and field.default is not empty:
            field.initial = field.default() if callable(field.default) else field.default
    return serializer


def json_template(serializer: serializers.Serializer) -> dict:
    """A body to fill in: the required fields, and the optional ones that have a default
    or take null, so that sent as it is it fails only on what must be filled in."""
    body = {}
    for name, field in serializer.fields.items():
        if field.read_only:
            continue
        if field.required or field.default is not empty:
            body[name] = field.initial
        elif field.allow_null:
            body[name] = None
    return body


class BrowsableAPIRenderer(renderers.BrowsableAPIRenderer):
    form_renderer_class = InputFormRenderer

    def get_rendered_html_form(self, data, view, method, request):
        if method not in WRITE_METHODS:
            return super().get_rendered_html_form(data, view, method, request)
        with override_method(view, request, method) as request:
            if not self.show_form_for_method(view, method, request, None):
                return None
            if not any(is_form_media_type(parser.media_type) for parser in view.parser_classes):
                return None
            serializer = input_serializer(view, method, context={"request": request, "view": view})
            return None if serializer is None else self.render_form_for_serializer(serializer)

    def get_raw_data_form(self, data, view, method, request):
        form = super().get_raw_data_form(data, view, method, request)
        if form is None or method not in WRITE_METHODS:
            return form
        serializer = input_serializer(view, method)
        content = "" if serializer is None else json.dumps(json_template(serializer), indent=4, default=str)
        form.fields["_content"].initial = content
        return form
