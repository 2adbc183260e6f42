from django.db.models import QuerySet

from config.errors import NotFound
from config.ids import parse_uuid
from payments.models import Payment


def payment_list(*, merchant) -> QuerySet[Payment]:
    qs = Payment.objects.select_related("merchant")
    return qs if merchant is None else qs.filter(merchant=merchant)


def payment_get(*, merchant, payment_id) -> Payment:
    """Another merchant's payment is simply not found (404)."""
    payment = payment_list(merchant=merchant).filter(pk=parse_uuid(payment_id, what="payment")).first()
    if payment is None:
        raise NotFound(f"No such payment: {payment_id}.")
    return payment
