import uuid

from django.db import models
from django.db.models import F, Q

from config.money_display import money
from payments.identity.models import ApiKey, Category, Customer, Merchant, Region, Subscription

__all__ = [
    "ApiKey",
    "Category",
    "Customer",
    "Merchant",
    "Region",
    "Subscription",
    "Payment",
    "PaymentEvent",
    "Refund",
    "MockCheckout",
    "Charge",
]


class PaymentStatus(models.TextChoices):
    PENDING = "pending"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELED = "canceled"
    EXPIRED = "expired"
    PARTIALLY_REFUNDED = "partially_refunded"
    REFUNDED = "refunded"


# The state machine (DESIGN.md "Payments"); anything else is an IllegalTransition.
# failed → succeeded: only when the provider reports the money collected after all
# (payment_settle_from_provider): money collected is always booked, never left aside.
TRANSITIONS: dict[str, frozenset[str]] = {
    PaymentStatus.PENDING: frozenset(
        {PaymentStatus.SUCCEEDED, PaymentStatus.FAILED, PaymentStatus.CANCELED, PaymentStatus.EXPIRED}
    ),
    PaymentStatus.FAILED: frozenset({PaymentStatus.SUCCEEDED}),
    PaymentStatus.SUCCEEDED: frozenset({PaymentStatus.PARTIALLY_REFUNDED, PaymentStatus.REFUNDED}),
    PaymentStatus.PARTIALLY_REFUNDED: frozenset({PaymentStatus.PARTIALLY_REFUNDED, PaymentStatus.REFUNDED}),
}


class Payment(models.Model):
    """One intent to collect `amount` from a customer for a merchant's order."""

    Status = PaymentStatus

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    # Indexed below, with created_at: a merchant's payments of a period.
    merchant = models.ForeignKey(Merchant, on_delete=models.PROTECT, related_name="payments", db_index=False)
    customer = models.ForeignKey(Customer, null=True, blank=True, on_delete=models.PROTECT, related_name="payments")
    order_id = models.CharField(max_length=255)
    amount = models.BigIntegerField()
    currency = models.CharField(max_length=3)
    amount_refunded = models.BigIntegerField(default=0)
    provider = models.CharField(max_length=30)
    provider_payment_id = models.CharField(max_length=255, blank=True, db_index=True)
    payment_url = models.URLField(max_length=2000, blank=True)
    client_secret = models.CharField(max_length=255, blank=True)
    return_url = models.URLField(max_length=2000, blank=True)
    status = models.CharField(max_length=20, choices=PaymentStatus.choices, default=PaymentStatus.PENDING)
    failure_reason = models.TextField(blank=True)
    description = models.CharField(max_length=1000, blank=True)
    metadata = models.JSONField(default=dict, blank=True)
    split_instructions = models.JSONField(default=list, blank=True)
    idempotency_key = models.CharField(max_length=255, blank=True)
    reconcile_claimed_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)  # indexed below, covering the dashboard's totals
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-created_at"]
        constraints = [
            # One pending payment per order, decided by the database under concurrency.
            models.UniqueConstraint(
                fields=["merchant", "order_id"], condition=Q(status="pending"), name="payment_one_pending_per_order"
            ),
            models.UniqueConstraint(
                fields=["provider", "provider_payment_id"],
                condition=~Q(provider_payment_id=""),
                name="payment_unique_provider_id",
            ),
            # The create request's caller-scoped Idempotency-Key: a retry resumes this row.
            models.UniqueConstraint(
                fields=["merchant", "idempotency_key"],
                condition=~Q(idempotency_key=""),
                name="payment_idempotency_key_unique_per_merchant",
            ),
            models.CheckConstraint(condition=Q(amount__gt=0), name="payment_amount_positive"),
            models.CheckConstraint(
                condition=Q(amount_refunded__gte=0) & Q(amount_refunded__lte=F("amount")),
                name="payment_refunded_within_amount",
            ),
        ]
        indexes = [
            models.Index(fields=["status", "created_at"], name="payment_status_created_idx"),
            # The created_at and merchant indexes, carrying what the dashboard sums by day:
            # its totals over a range, for all merchants or one, are an index-only scan,
            # never a visit to each payment's row.
            models.Index(
                fields=["created_at"],
                include=["currency", "status", "amount", "merchant"],
                name="payment_created_covering_idx",
            ),
            models.Index(
                fields=["merchant", "created_at"],
                include=["currency", "status", "amount"],
                name="payment_merchant_created_idx",
            ),
        ]
        # Operator actions in the admin (payments/admin_actions.py): "view" shows, these act.
        permissions = [
            ("refund_payment", "Can refund a payment (full or partial)"),
            ("cancel_payment", "Can cancel a pending payment"),
            ("reconcile_payment", "Can ask the provider about a pending payment now"),
        ]

    def __str__(self):
        return f"{self.order_id} · {money(self.amount, self.currency)} ({self.status})"

    @property
    def refundable(self) -> int:
        return self.amount - self.amount_refunded if self.status in ("succeeded", "partially_refunded") else 0


class PaymentEvent(models.Model):
    """The payment's timeline: every transition and notable fact, oldest first."""

    class Source(models.TextChoices):
        API = "api"
        PROVIDER_WEBHOOK = "provider_webhook"
        RECONCILIATION = "reconciliation"
        STAFF = "staff"

    payment = models.ForeignKey(Payment, on_delete=models.CASCADE, related_name="timeline")
    type = models.CharField(max_length=60)
    from_status = models.CharField(max_length=20, blank=True)
    to_status = models.CharField(max_length=20, blank=True)
    source = models.CharField(max_length=20, choices=Source.choices)
    data = models.JSONField(default=dict, blank=True)
    flagged = models.BooleanField(default=False)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["created_at", "id"]

    def __str__(self):
        return f"{self.type} {self.from_status}→{self.to_status}"


class Refund(models.Model):
    class Status(models.TextChoices):
        PENDING = "pending"
        SUCCEEDED = "succeeded"
        FAILED = "failed"

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    payment = models.ForeignKey(Payment, on_delete=models.PROTECT, related_name="refunds")
    amount = models.BigIntegerField()
    wallet_amount = models.BigIntegerField(default=0, help_text="Returned to the wallet by a ledger reversal.")
    provider_amount = models.BigIntegerField(default=0, help_text="Refunded through the provider.")
    split_returns = models.JSONField(
        default=dict, blank=True, help_text="What each split recipient gave back for it (negative: got back)."
    )
    claimed_at = models.DateTimeField(null=True, blank=True, help_text="Set while a worker asks the provider again.")
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.PENDING)
    reason = models.CharField(max_length=500, blank=True)
    provider_refund_id = models.CharField(max_length=255, blank=True)
    failure_reason = models.TextField(blank=True)
    idempotency_key = models.CharField(
        max_length=255, null=True, blank=True, help_text="The refund request's caller-scoped Idempotency-Key."
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at"]
        constraints = [
            models.CheckConstraint(condition=Q(amount__gt=0), name="refund_amount_positive"),
            models.UniqueConstraint(
                fields=["payment", "idempotency_key"],
                condition=Q(idempotency_key__isnull=False),
                name="refund_idempotency_key_unique_per_payment",
            ),
        ]

    def __str__(self):
        return f"refund {money(self.amount, self.payment.currency)} ({self.status})"


class MockCheckout(models.Model):
    """The mock provider's own record of a checkout (what a real provider keeps on its
    side): what the payer chose on the mock page, read back by reconciliation."""

    provider_payment_id = models.CharField(max_length=100, primary_key=True)
    payment = models.OneToOneField(Payment, on_delete=models.CASCADE, related_name="mock_checkout")
    status = models.CharField(max_length=20, default="pending")
    updated_at = models.DateTimeField(auto_now=True)

    def __str__(self):
        return f"{self.provider_payment_id} ({self.status})"


class Charge(models.Model):
    """One attempt to fund a payment: the customer's wallet first (a hold, captured only
    when the card part succeeds), then the saved card off-session for the rest."""

    class Status(models.TextChoices):
        PENDING = "pending"
        SUCCEEDED = "succeeded"
        FAILED = "failed"

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    merchant = models.ForeignKey(Merchant, on_delete=models.PROTECT, related_name="charges")
    customer = models.ForeignKey(Customer, on_delete=models.PROTECT, related_name="charges")
    payment = models.ForeignKey(Payment, on_delete=models.PROTECT, related_name="charges")
    amount = models.BigIntegerField()
    currency = models.CharField(max_length=3)
    wallet_amount = models.BigIntegerField(default=0)
    external_amount = models.BigIntegerField(default=0)
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.PENDING)
    failure_reason = models.TextField(blank=True)
    provider = models.CharField(max_length=30, blank=True)
    provider_charge_id = models.CharField(max_length=255, blank=True)
    hold = models.ForeignKey("wallets.Hold", null=True, blank=True, on_delete=models.PROTECT, related_name="+")
    wallet_transfer = models.ForeignKey(
        "wallets.Transfer",
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="+",
        help_text="What moved the wallet part (the hold's capture, or a direct transfer): refunds reverse it.",
    )
    split_instructions = models.JSONField(default=list, blank=True)
    description = models.CharField(max_length=1000, blank=True)
    metadata = models.JSONField(default=dict, blank=True)
    idempotency_key = models.CharField(max_length=255, null=True, blank=True)
    claimed_at = models.DateTimeField(null=True, blank=True, help_text="Set while a worker settles it.")
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-created_at"]
        constraints = [
            models.CheckConstraint(condition=Q(amount__gt=0), name="charge_amount_positive"),
            models.CheckConstraint(
                condition=Q(wallet_amount__gte=0, external_amount__gte=0)
                & Q(amount=F("wallet_amount") + F("external_amount")),
                name="charge_parts_sum_to_amount",
            ),
            models.UniqueConstraint(
                fields=["merchant", "idempotency_key"],
                condition=Q(idempotency_key__isnull=False),
                name="charge_idempotency_key_unique_per_merchant",
            ),
        ]
        indexes = [models.Index(fields=["created_at"], condition=Q(status="pending"), name="charge_pending_idx")]

    def __str__(self):
        return f"charge {money(self.amount, self.currency)} ({self.status})"
