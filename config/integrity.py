"""Which constraint an IntegrityError broke, on PostgreSQL and on SQLite alike.

PostgreSQL names the constraint in its message; SQLite names the columns instead
("UNIQUE constraint failed: payments_payment.merchant_id, payments_payment.order_id"),
so a check for the name alone turned a unique conflict into a 500 on the embedded
default. Django has no portable way to tell (its IntegrityError carries only the
driver's message)."""

from django.db import IntegrityError, models


def violates(exc: IntegrityError, model: type[models.Model], name: str) -> bool:
    """Whether `exc` is a violation of `model`'s unique constraint `name`."""
    message = str(exc)
    if name in message:
        return True
    constraint = next(c for c in model._meta.constraints if c.name == name)
    table = model._meta.db_table
    columns = ", ".join(f"{table}.{model._meta.get_field(f).column}" for f in constraint.fields)
    return message == f"UNIQUE constraint failed: {columns}"
