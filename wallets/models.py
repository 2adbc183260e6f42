"""The ledger: accounts, transfers made of balanced entries, holds, audit runs.

Money is an integer in minor units (or whole credits for the "credits" unit). Every
movement is a Transfer whose Entries sum to zero; an account's cached `balance` is the
sum of its entries, kept in step under a row lock by wallets.services. Entries and
transfers are append-only: the models, their QuerySets and (on PostgreSQL) triggers refuse
UPDATE/DELETE (of a transfer: DELETE, and UPDATE of what it moved) and TRUNCATE of one
ledger table alone; a deferred constraint trigger checks each transfer balances at commit.
"""

import uuid

from django.conf import settings
from django.db import models
from django.db.models import F, Q

from config.money_display import money

CREDITS_UNIT = "credits"


class AppendOnlyError(Exception):
    """Ledger entries are never updated or deleted: correct with a reversing transfer."""


class Account(models.Model):
    class Kind(models.TextChoices):
        CUSTOMER_WALLET = "customer_wallet"
        MERCHANT_BALANCE = "merchant_balance"
        PLATFORM = "platform"
        PROVIDER_CLEARING = "provider_clearing"
        EXTERNAL_FUNDING = "external_funding"
        CREDITS = "credits"
        RECIPIENT = "recipient"

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    kind = models.CharField(max_length=30, choices=Kind.choices)
    merchant = models.ForeignKey(
        "payments.Merchant", null=True, blank=True, on_delete=models.PROTECT, related_name="ledger_accounts"
    )
    customer = models.ForeignKey(
        "payments.Customer", null=True, blank=True, on_delete=models.PROTECT, related_name="ledger_accounts"
    )
    name = models.CharField(max_length=100, blank=True, help_text="Tells apart several accounts of one kind.")
    currency = models.CharField(max_length=10, help_text='Lowercase ISO 4217 code, or the unit "credits".')
    balance = models.BigIntegerField(default=0, editable=False)
    held = models.BigIntegerField(default=0, editable=False, help_text="Sum of pending holds.")
    allow_negative = models.BooleanField(default=False, editable=False)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at"]
        indexes = [models.Index(fields=["customer", "currency"])]
        constraints = [
            models.CheckConstraint(
                condition=Q(allow_negative=True) | Q(balance__gte=0), name="account_balance_not_negative"
            ),
            models.CheckConstraint(condition=Q(held__gte=0), name="account_held_not_negative"),
            models.CheckConstraint(
                condition=Q(allow_negative=True) | Q(balance__gte=F("held")), name="account_available_not_negative"
            ),
            # NULLs are distinct in a unique index, so one constraint per shape of owner.
            models.UniqueConstraint(
                fields=["kind", "merchant", "customer", "currency", "name"],
                condition=Q(customer__isnull=False),
                name="account_unique_per_customer",
            ),
            models.UniqueConstraint(
                fields=["kind", "merchant", "currency", "name"],
                condition=Q(customer__isnull=True, merchant__isnull=False),
                name="account_unique_per_merchant",
            ),
            models.UniqueConstraint(
                fields=["kind", "currency", "name"],
                condition=Q(customer__isnull=True, merchant__isnull=True),
                name="account_unique_system",
            ),
        ]

    def __str__(self):
        owner = str(self.customer_id or self.merchant_id or "system")[:8]
        suffix = f" {self.name}" if self.name else ""
        return f"{self.kind}{suffix} {self.currency} ({owner})"

    @property
    def available(self) -> int:
        return self.balance - self.held


class Wallet(Account):
    """A customer's account in one currency (Account with kind customer_wallet)."""

    class Meta:
        proxy = True
        permissions = [("adjust_balance", "Can adjust a wallet's balance (staff credit or debit)")]


class TransferQuerySet(models.QuerySet):
    def delete(self):
        raise AppendOnlyError("Transfers cannot be deleted: reverse them.")

    def _raw_delete(self, using):
        raise AppendOnlyError("Transfers cannot be deleted: reverse them.")


class Transfer(models.Model):
    """A balanced group of entries. Append-only like its entries: never deleted, and what
    it moved never changes (on PostgreSQL a trigger refuses both, and a deferred
    constraint trigger refuses at commit a transfer whose entries do not sum to zero)."""

    class Kind(models.TextChoices):
        TRANSFER = "transfer"
        CREDIT = "credit"
        DEBIT = "debit"
        ADJUSTMENT = "adjustment"
        HOLD_CAPTURE = "hold_capture"
        REVERSAL = "reversal"

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    merchant = models.ForeignKey(
        "payments.Merchant",
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="+",
        help_text="The owner: scopes the idempotency key.",
    )
    currency = models.CharField(max_length=10)
    amount = models.BigIntegerField(help_text="What moved: the sum of the positive legs.")
    kind = models.CharField(max_length=20, choices=Kind.choices, default=Kind.TRANSFER)
    reference = models.CharField(max_length=255, blank=True, db_index=True)
    description = models.TextField(blank=True)
    idempotency_key = models.CharField(max_length=255, null=True, blank=True)
    reverses = models.ForeignKey("self", null=True, blank=True, on_delete=models.PROTECT, related_name="reversals")
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)

    objects = TransferQuerySet.as_manager()

    class Meta:
        ordering = ["-created_at"]
        constraints = [
            models.CheckConstraint(condition=Q(amount__gt=0), name="transfer_amount_positive"),
            models.UniqueConstraint(
                fields=["merchant", "idempotency_key"],
                condition=Q(idempotency_key__isnull=False, merchant__isnull=False),
                name="transfer_idempotency_key_unique_per_merchant",
            ),
            models.UniqueConstraint(
                fields=["idempotency_key"],
                condition=Q(idempotency_key__isnull=False, merchant__isnull=True),
                name="transfer_idempotency_key_unique_system",
            ),
        ]

    def __str__(self):
        return f"{self.kind} {money(self.amount, self.currency)} ({str(self.id)[:8]})"

    def delete(self, *args, **kwargs):
        raise AppendOnlyError("Transfers cannot be deleted: reverse them.")


class EntryQuerySet(models.QuerySet):
    def update(self, **kwargs):
        raise AppendOnlyError("Ledger entries cannot be updated.")

    def delete(self):
        raise AppendOnlyError("Ledger entries cannot be deleted.")

    def _raw_delete(self, using):
        raise AppendOnlyError("Ledger entries cannot be deleted.")


class Entry(models.Model):
    """One leg of a transfer on one account: a signed amount and the balance after it."""

    id = models.BigAutoField(primary_key=True)
    # Indexed by entry_one_leg_per_account (transfer, account), which also serves a
    # lookup by transfer alone.
    transfer = models.ForeignKey(Transfer, on_delete=models.PROTECT, related_name="entries", db_index=False)
    # Indexed by entry_account_newest (account, -id), which serves a lookup by account too.
    account = models.ForeignKey(Account, on_delete=models.PROTECT, related_name="entries", db_index=False)
    amount = models.BigIntegerField(help_text="Signed: positive in, negative out.")
    balance_after = models.BigIntegerField()
    created_at = models.DateTimeField(auto_now_add=True)

    objects = EntryQuerySet.as_manager()

    class Meta:
        ordering = ["-id"]
        verbose_name_plural = "entries"
        indexes = [models.Index(fields=["account", "-id"], name="entry_account_newest")]
        constraints = [
            models.CheckConstraint(condition=~Q(amount=0), name="entry_amount_not_zero"),
            # One leg per account in a transfer (the ledger core merges what it draws
            # from one account), so a transfer's leg on an account is one index probe.
            models.UniqueConstraint(fields=["transfer", "account"], name="entry_one_leg_per_account"),
        ]

    def __str__(self):
        return f"{'+' if self.amount > 0 else ''}{money(self.amount, self.account.currency)} on {self.account}"

    def save(self, *args, **kwargs):
        if not self._state.adding:
            raise AppendOnlyError("Ledger entries cannot be updated.")
        super().save(*args, **kwargs)

    def delete(self, *args, **kwargs):
        raise AppendOnlyError("Ledger entries cannot be deleted.")


class Hold(models.Model):
    """Funds reserved on an account: `held` rises, `balance` does not, until captured
    (posted to `destination`, possibly for less), voided, or expired."""

    class Status(models.TextChoices):
        PENDING = "pending"
        CAPTURED = "captured"
        VOIDED = "voided"
        EXPIRED = "expired"

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    account = models.ForeignKey(Account, on_delete=models.PROTECT, related_name="holds")
    destination = models.ForeignKey(
        Account, on_delete=models.PROTECT, related_name="+", help_text="Where a capture posts by default."
    )
    amount = models.BigIntegerField()
    captured_amount = models.BigIntegerField(default=0)
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.PENDING)
    expires_at = models.DateTimeField(null=True, blank=True)
    reference = models.CharField(max_length=255, blank=True, db_index=True)
    idempotency_key = models.CharField(max_length=255, null=True, blank=True)
    owner = models.CharField(
        max_length=100,
        blank=True,
        help_text="Set when the hold belongs to a workflow (e.g. charge:<id>): only it may capture or void it.",
    )
    capture_transfer = models.ForeignKey(Transfer, null=True, blank=True, on_delete=models.PROTECT, related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)
    resolved_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]
        permissions = [("void_hold", "Can void a pending hold")]
        indexes = [
            models.Index(fields=["expires_at"], condition=Q(status="pending"), name="hold_pending_expiry"),
        ]
        constraints = [
            models.CheckConstraint(condition=Q(amount__gt=0), name="hold_amount_positive"),
            models.CheckConstraint(
                condition=Q(captured_amount__gte=0, captured_amount__lte=F("amount")),
                name="hold_captured_within_amount",
            ),
            models.UniqueConstraint(
                fields=["account", "idempotency_key"],
                condition=Q(idempotency_key__isnull=False),
                name="hold_idempotency_key_unique_per_account",
            ),
        ]

    def __str__(self):
        return f"hold {money(self.amount, self.account.currency)} {self.status} ({str(self.id)[:8]})"

    @property
    def currency(self) -> str:
        return self.account.currency


class LedgerAudit(models.Model):
    """One run of the ledger audit and what it found."""

    id = models.BigAutoField(primary_key=True)
    ok = models.BooleanField()
    trigger = models.CharField(max_length=20, help_text="task, command or admin")
    report = models.JSONField()
    started_at = models.DateTimeField()
    duration_ms = models.PositiveIntegerField()

    class Meta:
        ordering = ["-started_at"]
        permissions = [("run_ledger_audit", "Can run the ledger audit")]

    def __str__(self):
        return f"audit {self.started_at:%Y-%m-%d %H:%M:%S} {'ok' if self.ok else 'FAILED'}"
