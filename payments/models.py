from payments.identity.models import ApiKey, Category, Customer, Merchant, Region, Subscription

__all__ = ["ApiKey", "Category", "Customer", "Merchant", "Region", "Subscription"]
