from drf_spectacular.openapi import AutoSchema as SpectacularAutoSchema


class AutoSchema(SpectacularAutoSchema):
    """Names a view's nested serializers after the view (STYLE.md's `class Input` inside
    each APIView), so `CustomerListCreateApi.Input` and `WebhookEndpointListCreateApi.Input`
    do not collide as one "Input" component."""

    def _get_serializer_name(self, serializer, direction, bypass_extensions=False):
        name = super()._get_serializer_name(serializer, direction, bypass_extensions)
        cls = serializer.__class__
        outer = cls.__qualname__.split(".")[0]
        if outer != cls.__name__ and name.startswith(cls.__name__):
            return outer.removesuffix("Api") + name
        return name
