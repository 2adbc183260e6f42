"""Every event that crosses Paydesk's edge: inbound provider events, and the outbox of
signed notifications to merchants' endpoints."""

import uuid

from django.conf import settings
from django.db import models
from django.db.models import Q


class InboundEvent(models.Model):
    """A provider event as received: stored (raw) before it is processed, once per
    (provider, event id) — a repeat delivery finds the row and changes nothing."""

    class Status(models.TextChoices):
        RECEIVED = "received"
        PROCESSED = "processed"
        FAILED = "failed"
        IGNORED = "ignored"

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    provider = models.CharField(max_length=30)
    event_id = models.CharField(max_length=255)
    type = models.CharField(max_length=100, db_index=True)
    payload = models.JSONField()
    raw_body = models.TextField()
    headers = models.JSONField(default=dict, blank=True)
    signature_verified = models.BooleanField(default=False)
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.RECEIVED, db_index=True)
    attempts = models.PositiveIntegerField(default=0)
    last_error = models.TextField(blank=True)
    flagged = models.BooleanField(default=False, help_text="A handler found something staff should look at.")
    flag_reason = models.TextField(blank=True, help_text="What the handler found (flagged events).")
    received_at = models.DateTimeField(auto_now_add=True, db_index=True)
    processed_at = models.DateTimeField(null=True, blank=True)
    next_attempt_at = models.DateTimeField(
        null=True,
        blank=True,
        help_text="A failed event is retried from then on (by its task or the sweep); "
        "empty once the retry schedule is used up: staff re-process it.",
    )

    class Meta:
        ordering = ["-received_at"]
        permissions = [("reprocess_inbound_event", "Can re-process an inbound event now")]
        constraints = [
            models.UniqueConstraint(fields=["provider", "event_id"], name="inbound_event_unique_per_provider"),
        ]
        indexes = [
            models.Index(fields=["next_attempt_at"], name="inbound_retry_due_idx", condition=Q(status="failed")),
        ]

    def __str__(self):
        return f"{self.provider}:{self.type}:{self.event_id}"


class WebhookEndpoint(models.Model):
    """A merchant's URL that receives signed outbound events. A deleted one (DELETE in
    the API) is gone for the merchant but kept, disabled, with its deliveries, for staff.

    With no merchant it is an operator endpoint, one per URL in WEBHOOK_URLS: it gets every
    merchant's events, signed with WEBHOOK_URLS_SECRET (not stored here), and is never
    seen in the API (webhooks.services.global_endpoints_sync keeps these rows)."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    merchant = models.ForeignKey(
        settings.PAYDESK_MERCHANT_MODEL,
        on_delete=models.CASCADE,
        related_name="+",
        null=True,
        blank=True,
        help_text="Empty: an operator endpoint from WEBHOOK_URLS, for every merchant's events.",
    )
    url = models.URLField(max_length=2000)
    events = models.JSONField(default=list, help_text='Subscribed event types, or ["*"] for all.')
    description = models.CharField(max_length=255, blank=True)
    secret = models.CharField(max_length=100, editable=False)
    enabled = models.BooleanField(default=True)
    disabled_reason = models.CharField(max_length=255, blank=True)
    consecutive_failures = models.PositiveIntegerField(default=0)
    created_at = models.DateTimeField(auto_now_add=True)
    deleted_at = models.DateTimeField(null=True, blank=True, help_text="Deleted by the merchant: gone from the API.")

    class Meta:
        ordering = ["-created_at"]
        constraints = [
            # Two processes that find a WEBHOOK_URLS entry missing both create it: one row wins.
            models.UniqueConstraint(
                fields=["url"], condition=Q(merchant__isnull=True), name="global_endpoint_url_unique"
            ),
        ]
        permissions = [("toggle_endpoint", "Can enable or disable a webhook endpoint")]

    def __str__(self):
        if self.deleted_at:
            return f"{self.url} (deleted)"
        return f"{self.url} (WEBHOOK_URLS)" if self.is_global else self.url

    @property
    def is_global(self) -> bool:
        return self.merchant_id is None

    def subscribes_to(self, event_type: str) -> bool:
        return "*" in self.events or event_type in self.events


class OutboundEvent(models.Model):
    """A domain event for a merchant, written in the same transaction as the change
    that caused it (the outbox). Its id is stable across retries: receivers dedupe on it."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    merchant = models.ForeignKey(settings.PAYDESK_MERCHANT_MODEL, on_delete=models.CASCADE, related_name="+")
    type = models.CharField(max_length=100, db_index=True)
    data = models.JSONField()
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self):
        return f"{self.type} {self.id}"


class Delivery(models.Model):
    """One event to one endpoint, retried with backoff until delivered or dead-lettered.
    An event emitted while its endpoint is disabled gets a `held` delivery: kept, never
    attempted, released (pending) when the endpoint is re-enabled. The API shows it as
    `pending`: not sent yet."""

    class Status(models.TextChoices):
        PENDING = "pending"
        DELIVERED = "delivered"
        RETRYING = "retrying"
        FAILED = "failed"
        HELD = "held"

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    event = models.ForeignKey(OutboundEvent, on_delete=models.CASCADE, related_name="deliveries")
    endpoint = models.ForeignKey(WebhookEndpoint, on_delete=models.CASCADE, related_name="deliveries")
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.PENDING)
    attempts = models.PositiveIntegerField(default=0)
    next_attempt_at = models.DateTimeField()
    claimed_at = models.DateTimeField(null=True, blank=True, help_text="Set while a worker is sending it.")
    last_response_code = models.PositiveSmallIntegerField(null=True, blank=True)
    last_error = models.TextField(blank=True)
    delivered_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["created_at"]
        verbose_name_plural = "deliveries"
        permissions = [("resend_delivery", "Can resend a delivery now")]
        constraints = [models.UniqueConstraint(fields=["event", "endpoint"], name="delivery_unique_per_endpoint")]
        indexes = [
            models.Index(
                fields=["next_attempt_at"],
                name="delivery_due_idx",
                condition=Q(status__in=["pending", "retrying"]),
            ),
            # The sweep looks for held deliveries of enabled endpoints: few, among many rows.
            models.Index(fields=["endpoint"], name="delivery_held_idx", condition=Q(status="held")),
        ]

    def __str__(self):
        return f"{self.event.type} → {self.endpoint.url} ({self.status})"


class DeliveryAttempt(models.Model):
    delivery = models.ForeignKey(Delivery, on_delete=models.CASCADE, related_name="attempt_log")
    number = models.PositiveIntegerField()
    started_at = models.DateTimeField()
    response_code = models.PositiveSmallIntegerField(null=True, blank=True)
    latency_ms = models.PositiveIntegerField(null=True, blank=True)
    response_body = models.TextField(blank=True)
    error = models.TextField(blank=True)

    class Meta:
        ordering = ["delivery", "number"]

    def __str__(self):
        return f"attempt {self.number} of {self.delivery_id}"
