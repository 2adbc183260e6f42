import uuid

from django.db import models


class IdempotencyKey(models.Model):
    """A caller's Idempotency-Key and the first response it produced (Stripe semantics).

    Unique per (scope, key): the database decides which of two concurrent requests runs.
    """

    class State(models.TextChoices):
        IN_FLIGHT = "in_flight"
        DONE = "done"

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    scope = models.CharField(max_length=100, help_text="The caller: merchant, customer or staff user.")
    key = models.CharField(max_length=255)
    method = models.CharField(max_length=10)
    path = models.CharField(max_length=500)
    request_hash = models.CharField(max_length=64)
    state = models.CharField(max_length=10, choices=State.choices, default=State.IN_FLIGHT)
    response_status = models.PositiveSmallIntegerField(null=True, blank=True)
    # The first response's data as JSON text, not jsonb: jsonb reorders object keys, and a
    # replay must return the very same body, byte for byte.
    response_body = models.TextField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)
    completed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["scope", "key"], name="idempotency_key_unique_per_scope")]

    def __str__(self):
        return f"{self.scope}:{self.key}"
