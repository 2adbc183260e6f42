"""Buy now, pay later: an order split into installments collected when due."""

import uuid

from django.db import models
from django.db.models import F, Q

from config.money_display import money
from payments.identity.models import Customer, Merchant


class InstallmentOrder(models.Model):
    class Status(models.TextChoices):
        ACTIVE = "active"
        COMPLETED = "completed"
        DEFAULTED = "defaulted"
        CANCELED = "canceled"

    class Interval(models.TextChoices):
        MONTH = "month"
        WEEK = "week"
        DAY = "day"

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    merchant = models.ForeignKey(Merchant, on_delete=models.PROTECT, related_name="installment_orders")
    customer = models.ForeignKey(Customer, on_delete=models.PROTECT, related_name="installment_orders")
    amount = models.BigIntegerField()
    currency = models.CharField(max_length=3)
    down_payment = models.BigIntegerField(default=0)
    down_payment_charge = models.ForeignKey(
        "payments.Charge", null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    interval = models.CharField(max_length=5, choices=Interval.choices, blank=True)
    interval_count = models.PositiveIntegerField(default=1)
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.ACTIVE)
    early_payments = models.PositiveIntegerField(
        default=0, editable=False, help_text="Early-payment requests so far: numbers each one's charge key."
    )
    description = models.CharField(max_length=1000, blank=True)
    metadata = models.JSONField(default=dict, blank=True)
    idempotency_key = models.CharField(
        max_length=255, null=True, blank=True, help_text="The create request's caller-scoped Idempotency-Key."
    )
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-created_at"]
        # Operator actions in the admin (installments/admin_actions.py): "view" shows, these act.
        permissions = [
            ("retry_installments", "Can make an order's failed installments due now"),
            ("cancel_installment_order", "Can cancel an installment order"),
            ("reschedule_installments", "Can postpone an order's open installments"),
        ]
        constraints = [
            models.CheckConstraint(condition=Q(amount__gt=0), name="installment_order_amount_positive"),
            models.CheckConstraint(
                condition=Q(down_payment__gte=0) & Q(down_payment__lt=F("amount")),
                name="installment_order_down_payment_within_amount",
            ),
            models.UniqueConstraint(
                fields=["merchant", "idempotency_key"],
                condition=Q(idempotency_key__isnull=False),
                name="installment_order_idempotency_key_unique_per_merchant",
            ),
        ]

    def __str__(self):
        return f"{money(self.amount, self.currency)} in installments ({self.status})"


class Installment(models.Model):
    """One part of an order's schedule. Sequence 0, when there is one, is the down payment.

    An attempt to collect it is claimed (status `processing`) together with the
    idempotency key of the one charge that attempt may make (`charge_key`), whoever
    claims it: the collector (`inst:<id>:<attempt>`), an early payment (`pay:<order>:<n>`,
    shared by the installments that one charge pays) or the order's creation
    (`down:<order>`). Whoever finishes the attempt later looks the charge up by that key.
    """

    class Status(models.TextChoices):
        SCHEDULED = "scheduled"
        PROCESSING = "processing"
        PAID = "paid"
        FAILED = "failed"  # a charge failed; retried on the dunning schedule
        DEFAULTED = "defaulted"
        CANCELED = "canceled"

    class ClaimSource(models.TextChoices):
        COLLECTION = "collection"
        EARLY_PAYMENT = "early_payment"
        DOWN_PAYMENT = "down_payment"

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    order = models.ForeignKey(InstallmentOrder, on_delete=models.CASCADE, related_name="installments")
    sequence = models.PositiveIntegerField()
    due_date = models.DateField()
    amount = models.BigIntegerField()
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.SCHEDULED)
    attempts = models.PositiveIntegerField(default=0, help_text="Collection attempts (dunning counts these).")
    next_attempt_at = models.DateTimeField(help_text="When collection next tries it (due date, then dunning).")
    claimed_at = models.DateTimeField(null=True, blank=True, help_text="Set while a collector charges it.")
    claim_source = models.CharField(max_length=14, choices=ClaimSource.choices, blank=True)
    charge_key = models.CharField(
        max_length=100, blank=True, help_text="Idempotency key of the current (or last) attempt's one charge."
    )
    last_error = models.TextField(blank=True)
    paid_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["order", "sequence"]
        constraints = [
            models.CheckConstraint(condition=Q(amount__gt=0), name="installment_amount_positive"),
            models.UniqueConstraint(fields=["order", "sequence"], name="installment_sequence_unique"),
        ]
        indexes = [
            # The collector's claims, each an index scan that stops after one chunk
            # whatever the backlog: due rows in due order, and lapsed claims.
            models.Index(
                fields=["next_attempt_at"],
                name="installment_due_idx",
                condition=Q(status__in=["scheduled", "failed"]),
            ),
            models.Index(fields=["claimed_at"], name="installment_processing_idx", condition=Q(status="processing")),
        ]

    def __str__(self):
        return f"#{self.sequence} {money(self.amount, self.order.currency)} due {self.due_date} ({self.status})"

    @property
    def is_overdue(self) -> bool:
        from django.utils import timezone

        return self.status in ("scheduled", "failed") and self.due_date < timezone.localdate()


class InstallmentCharge(models.Model):
    """Which charge paid (or tried to pay) which installment. One charge may pay several
    installments (an early payment of all that is left); `attempt` is the installment's
    collection attempt count when the charge was made."""

    installment = models.ForeignKey(Installment, on_delete=models.CASCADE, related_name="charge_attempts")
    attempt = models.PositiveIntegerField()
    charge = models.ForeignKey("payments.Charge", on_delete=models.PROTECT, related_name="installment_attempts")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["installment", "created_at", "id"]
        constraints = [models.UniqueConstraint(fields=["installment", "charge"], name="installment_charge_once")]

    def __str__(self):
        return f"attempt {self.attempt}"


class InstallmentEvent(models.Model):
    """The order's timeline: every status change of the order or one of its installments."""

    order = models.ForeignKey(InstallmentOrder, on_delete=models.CASCADE, related_name="timeline")
    installment = models.ForeignKey(Installment, null=True, blank=True, on_delete=models.CASCADE, related_name="+")
    type = models.CharField(max_length=60)
    from_status = models.CharField(max_length=12, blank=True)
    to_status = models.CharField(max_length=12, blank=True)
    source = models.CharField(max_length=20, default="api")
    data = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["created_at", "id"]

    def __str__(self):
        moved = f" {self.from_status}→{self.to_status}" if self.from_status or self.to_status else ""
        return f"{self.type}{moved}"
