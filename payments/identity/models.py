"""Identity: who calls Paydesk and on whose behalf. The one part of the payments app
that lower layers (wallets, webhooks) may import."""

import uuid

from django.db import models
from django.db.models import Q


class Region(models.Model):
    """Reference data: a country, its currency, and the provider used when none is named."""

    code = models.CharField(max_length=2, primary_key=True, help_text="ISO 3166-1 alpha-2")
    name = models.CharField(max_length=100)
    currency = models.CharField(max_length=3, help_text="ISO 4217, lowercase")
    default_provider = models.CharField(max_length=30, blank=True, help_text="Empty: the global default provider.")

    class Meta:
        ordering = ["code"]

    def __str__(self):
        return f"{self.name} ({self.code})"


class Category(models.Model):
    code = models.SlugField(max_length=50, primary_key=True)
    name = models.CharField(max_length=100)

    class Meta:
        ordering = ["name"]
        verbose_name_plural = "categories"

    def __str__(self):
        return self.name


class Merchant(models.Model):
    class Status(models.TextChoices):
        ACTIVE = "active"
        SUSPENDED = "suspended"

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    name = models.CharField(max_length=200, unique=True)
    region = models.ForeignKey(Region, null=True, blank=True, on_delete=models.PROTECT)
    category = models.ForeignKey(Category, null=True, blank=True, on_delete=models.PROTECT)
    status = models.CharField(max_length=20, choices=Status.choices, default=Status.ACTIVE)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["name"]

    def __str__(self):
        return self.name

    @property
    def is_active(self) -> bool:
        return self.status == self.Status.ACTIVE


class ApiKey(models.Model):
    """A merchant's secret key. Only its SHA-256 digest is stored: keys are 190 bits of
    randomness, so a fast hash is safe (like GitHub's tokens) and lookup is one indexed
    row. `prefix` is the first characters, kept to recognise a key in admin."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    merchant = models.ForeignKey(Merchant, on_delete=models.CASCADE, related_name="api_keys")
    name = models.CharField(max_length=100, blank=True)
    prefix = models.CharField(max_length=20, db_index=True)
    key_hash = models.CharField(max_length=64, unique=True, editable=False)
    livemode = models.BooleanField(default=False)
    created_at = models.DateTimeField(auto_now_add=True)
    last_used_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]
        verbose_name = "API key"

    def __str__(self):
        return f"{self.prefix}…"

    @property
    def is_active(self) -> bool:
        return self.revoked_at is None


class Subscription(models.Model):
    """A merchant's plan: `quota` payment creations per calendar month, `tokens_remaining`
    of them left in the current period. Tokens are consumed by one conditional UPDATE."""

    merchant = models.OneToOneField(Merchant, on_delete=models.CASCADE, related_name="subscription")
    plan = models.CharField(max_length=50, default="default")
    quota = models.PositiveIntegerField()
    tokens_remaining = models.IntegerField()
    period_start = models.DateTimeField()
    period_end = models.DateTimeField()
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [
            models.CheckConstraint(condition=Q(tokens_remaining__gte=0), name="subscription_tokens_not_negative"),
        ]

    def __str__(self):
        return f"{self.merchant} · {self.plan} ({self.tokens_remaining}/{self.quota})"


class Customer(models.Model):
    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    merchant = models.ForeignKey(Merchant, on_delete=models.PROTECT, related_name="customers")
    external_id = models.CharField(max_length=255)
    email = models.EmailField(blank=True)
    name = models.CharField(max_length=255, blank=True)
    stripe_customer_id = models.CharField(max_length=255, blank=True, db_index=True)
    payment_method = models.CharField(
        max_length=255,
        blank=True,
        help_text="A saved payment method at the provider (e.g. Stripe's pm_...), "
        "charged off-session for the card part of a charge.",
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at"]
        constraints = [
            models.UniqueConstraint(fields=["merchant", "external_id"], name="customer_external_id_unique_per_merchant")
        ]

    def __str__(self):
        return self.name or self.email or self.external_id
