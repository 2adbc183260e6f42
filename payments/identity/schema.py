"""OpenAPI (drf-spectacular) descriptions of Paydesk's authentication schemes."""

from drf_spectacular.extensions import OpenApiAuthenticationExtension


class ApiKeyScheme(OpenApiAuthenticationExtension):
    target_class = "payments.identity.authentication.ApiKeyAuthentication"
    name = "merchantApiKey"

    def get_security_definition(self, auto_schema):
        return {
            "type": "http",
            "scheme": "bearer",
            "description": "Merchant API key: `Authorization: Bearer pd_test_...` or `pd_live_...`.",
        }


class CustomerJWTScheme(OpenApiAuthenticationExtension):
    target_class = "payments.identity.authentication.CustomerJWTAuthentication"
    name = "customerJWT"

    def get_security_definition(self, auto_schema):
        return {
            "type": "http",
            "scheme": "bearer",
            "bearerFormat": "JWT",
            "description": "End-user token: HS256 signed with JWT_SECRET, `sub` = customer id, `exp` required.",
        }


class StaffSessionScheme(OpenApiAuthenticationExtension):
    target_class = "payments.identity.authentication.StaffSessionAuthentication"
    name = "staffSession"

    def get_security_definition(self, auto_schema):
        return {"type": "apiKey", "in": "cookie", "name": "sessionid", "description": "Staff admin login."}
