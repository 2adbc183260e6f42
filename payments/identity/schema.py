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


class NextAuthSessionScheme(OpenApiAuthenticationExtension):
    target_class = "payments.identity.authentication.NextAuthSessionAuthentication"
    name = "nextAuthSession"

    def get_security_definition(self, auto_schema):
        return {
            "type": "http",
            "scheme": "bearer",
            "bearerFormat": "JWE",
            "description": "NextAuth v4 or Auth.js v5 session token as NextAuth issues it (encrypted with a key "
            "derived from NEXTAUTH_SECRET), `sub` = the customer's external_id at NEXTAUTH_MERCHANT.",
        }


class StaffSessionScheme(OpenApiAuthenticationExtension):
    target_class = "payments.identity.authentication.StaffSessionAuthentication"
    name = "staffSession"

    def get_security_definition(self, auto_schema):
        return {"type": "apiKey", "in": "cookie", "name": "sessionid", "description": "Staff admin login."}
