from rest_framework.permissions import BasePermission


class IsMerchantOrStaff(BasePermission):
    """Merchant API keys and staff sessions. End-user JWTs are refused here."""

    message = "This endpoint needs a merchant API key."

    def has_permission(self, request, view):
        caller = request.user
        return bool(caller) and (getattr(caller, "api_key", None) is not None or getattr(caller, "is_staff", False))


class IsCustomer(BasePermission):
    """End-user JWT only."""

    message = "This endpoint needs an end-user token."

    def has_permission(self, request, view):
        caller = request.user
        return bool(caller) and getattr(caller, "customer", None) is not None and caller.api_key is None


class IsCustomerOrMerchant(BasePermission):
    message = "This endpoint needs an end-user token or a merchant API key."

    def has_permission(self, request, view):
        return IsCustomer().has_permission(request, view) or IsMerchantOrStaff().has_permission(request, view)
