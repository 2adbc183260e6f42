"""Prepaid usage credits on the ledger.

A customer's credit account is a wallets Account (kind `credits`, unit "credits", no
overdraft). Every change of its balance is a ledger transfer; the rows here say why:
a Grant (Stripe purchase, merchant or staff), a Debit (API usage), a Revocation
(refund or staff) and, on the grant itself, its expiry. `Grant.remaining` tracks what
is left of each grant for oldest-first consumption and expiry; it only changes under
the credit account's row lock, so the remaining units of live grants always sum to the
account's balance.
"""

import uuid

from django.conf import settings
from django.db import models
from django.db.models import F, Q

from wallets.models import Account


class CreditAccountManager(models.Manager):
    def get_queryset(self):
        return super().get_queryset().filter(kind=Account.Kind.CREDITS)


class CreditAccount(Account):
    """The ledger accounts holding customers' credits (for admin and reads)."""

    objects = CreditAccountManager()

    class Meta:
        proxy = True
        verbose_name = "credit account"
        # Operator actions in the admin (credits/admin_actions.py): "view" shows, these act.
        permissions = [
            ("grant_credits", "Can grant credits to a customer"),
            ("revoke_credits", "Can revoke a customer's credits"),
        ]


class CreditPack(models.Model):
    """What a Stripe price buys: `credits` units, optionally expiring after
    `expires_in_days`. `price_amount`/`currency` are for display; Stripe charges the price."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    merchant = models.ForeignKey("payments.Merchant", on_delete=models.PROTECT, related_name="credit_packs")
    code = models.SlugField(max_length=50, help_text="What clients send as `pack`, e.g. starter-100.")
    name = models.CharField(max_length=100)
    credits = models.PositiveIntegerField()
    stripe_price_id = models.CharField(max_length=255, blank=True, help_text="Stripe price id (price_...).")
    price_amount = models.PositiveBigIntegerField(help_text="Display price in minor units.")
    currency = models.CharField(max_length=3, default="usd")
    expires_in_days = models.PositiveIntegerField(null=True, blank=True, help_text="Empty: never expires.")
    active = models.BooleanField(default=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["merchant", "credits"]
        constraints = [
            models.CheckConstraint(condition=Q(credits__gt=0), name="credit_pack_credits_positive"),
            models.UniqueConstraint(fields=["merchant", "code"], name="credit_pack_code_unique_per_merchant"),
            models.UniqueConstraint(
                fields=["stripe_price_id"], condition=~Q(stripe_price_id=""), name="credit_pack_stripe_price_unique"
            ),
        ]

    def __str__(self):
        return f"{self.name} ({self.credits} credits)"


class Grant(models.Model):
    class Source(models.TextChoices):
        STRIPE_CHECKOUT = "stripe_checkout"
        STRIPE_INVOICE = "stripe_invoice"
        MERCHANT = "merchant"
        STAFF = "staff"

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    merchant = models.ForeignKey("payments.Merchant", on_delete=models.PROTECT, related_name="+")
    customer = models.ForeignKey("payments.Customer", on_delete=models.PROTECT, related_name="credit_grants")
    account = models.ForeignKey(Account, on_delete=models.PROTECT, related_name="+")
    units = models.PositiveBigIntegerField()
    remaining = models.BigIntegerField(help_text="Units of this grant not yet spent, revoked or expired.")
    source = models.CharField(max_length=20, choices=Source.choices)
    pack = models.ForeignKey(CreditPack, null=True, blank=True, on_delete=models.PROTECT, related_name="grants")
    reason = models.TextField(blank=True)
    expires_at = models.DateTimeField(null=True, blank=True)
    expired_units = models.BigIntegerField(default=0)
    expired_at = models.DateTimeField(null=True, blank=True)
    stripe_event_id = models.CharField(max_length=255, null=True, blank=True, editable=False)
    stripe_line = models.CharField(
        max_length=255, blank=True, default="", editable=False, help_text="Invoice line id (one grant per line)."
    )
    stripe_object_id = models.CharField(max_length=255, blank=True, editable=False, db_index=True)
    stripe_checkout_session = models.CharField(
        max_length=255,
        null=True,
        blank=True,
        editable=False,
        help_text="The Checkout Session (cs_...) this grant paid for: a session completes once, so it grants once.",
    )
    stripe_payment_intent = models.CharField(max_length=255, blank=True, editable=False, db_index=True)
    stripe_invoice = models.CharField(
        max_length=255,
        blank=True,
        editable=False,
        db_index=True,
        help_text="The Stripe invoice paid (an invoice.paid grant, or a checkout session that made an invoice).",
    )
    transfer = models.ForeignKey("wallets.Transfer", null=True, on_delete=models.PROTECT, related_name="+")
    expiry_transfer = models.ForeignKey(
        "wallets.Transfer", null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)

    class Meta:
        ordering = ["-created_at"]
        indexes = [
            models.Index(
                fields=["account", "expires_at", "created_at"], condition=Q(remaining__gt=0), name="grant_live"
            ),
        ]
        constraints = [
            models.CheckConstraint(condition=Q(units__gt=0), name="grant_units_positive"),
            models.CheckConstraint(condition=Q(remaining__gte=0, remaining__lte=F("units")), name="grant_remaining"),
            # Exactly once per Stripe event (and line): manual grants have no event id.
            models.UniqueConstraint(
                fields=["stripe_event_id", "stripe_line"],
                condition=Q(stripe_event_id__isnull=False),
                name="grant_unique_stripe_event",
            ),
            # Exactly once per Checkout Session, whatever the event id: a session completes
            # once, however many events say so. The account lock cannot decide between two
            # events naming different customers for one session; this index does.
            models.UniqueConstraint(
                fields=["stripe_checkout_session"],
                condition=Q(stripe_checkout_session__isnull=False),
                name="grant_unique_stripe_checkout_session",
            ),
        ]

    def __str__(self):
        return f"+{self.units} credits for {self.customer_id} ({self.source})"


class Debit(models.Model):
    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    merchant = models.ForeignKey("payments.Merchant", on_delete=models.PROTECT, related_name="+")
    customer = models.ForeignKey("payments.Customer", on_delete=models.PROTECT, related_name="credit_debits")
    account = models.ForeignKey(Account, on_delete=models.PROTECT, related_name="+")
    units = models.PositiveBigIntegerField()
    reason = models.TextField(blank=True)
    ref = models.CharField(max_length=255, blank=True, db_index=True)
    transfer = models.ForeignKey("wallets.Transfer", on_delete=models.PROTECT, related_name="+")
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)

    class Meta:
        ordering = ["-created_at"]
        constraints = [models.CheckConstraint(condition=Q(units__gt=0), name="debit_units_positive")]

    def __str__(self):
        return f"-{self.units} credits for {self.customer_id}"


class Revocation(models.Model):
    """Credits taken back (a refunded purchase, a staff correction): `requested` units,
    of which `revoked` were still there; the `shortfall` had already been spent."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    merchant = models.ForeignKey("payments.Merchant", on_delete=models.PROTECT, related_name="+")
    customer = models.ForeignKey("payments.Customer", on_delete=models.PROTECT, related_name="credit_revocations")
    account = models.ForeignKey(Account, on_delete=models.PROTECT, related_name="+")
    grant = models.ForeignKey(Grant, null=True, blank=True, on_delete=models.PROTECT, related_name="revocations")
    requested = models.PositiveBigIntegerField()
    revoked = models.PositiveBigIntegerField()
    shortfall = models.PositiveBigIntegerField()
    reason = models.TextField()
    stripe_event_id = models.CharField(max_length=255, null=True, blank=True, editable=False)
    transfer = models.ForeignKey("wallets.Transfer", null=True, blank=True, on_delete=models.PROTECT, related_name="+")
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)

    class Meta:
        ordering = ["-created_at"]
        constraints = [
            models.CheckConstraint(condition=Q(requested=F("revoked") + F("shortfall")), name="revocation_adds_up"),
            models.UniqueConstraint(
                fields=["stripe_event_id", "grant"],
                condition=Q(stripe_event_id__isnull=False),
                name="revocation_unique_stripe_event",
            ),
        ]

    def __str__(self):
        return f"revoke {self.revoked}/{self.requested} credits for {self.customer_id}"


class StripeInvoicePayment(models.Model):
    """What paid a Stripe invoice: its PaymentIntent and/or Charge.

    A refund arrives as charge.refunded, which names the charge and its PaymentIntent
    and, only in API versions before 2025-03-31, the invoice. This link is how a refund
    of an invoice finds the credits the invoice granted in every version. It is taken
    from invoice.paid (`payment_intent` / `charge` before 2025-03-31; `payments`, when
    expanded, after) and from invoice_payment.paid (2025-03-31 and later), whichever
    comes first; repeats add nothing.
    """

    invoice = models.CharField(max_length=255, db_index=True)
    payment_intent = models.CharField(max_length=255, blank=True, db_index=True)
    charge = models.CharField(max_length=255, blank=True, db_index=True)
    stripe_event_id = models.CharField(max_length=255, help_text="The event that told us first.")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at"]
        constraints = [
            models.UniqueConstraint(fields=["invoice", "payment_intent", "charge"], name="stripe_invoice_payment_once")
        ]

    def __str__(self):
        return f"{self.invoice} paid by {self.payment_intent or self.charge}"


class Checkout(models.Model):
    """A Checkout Session created to buy a pack (Stripe's or the mock provider's)."""

    class Status(models.TextChoices):
        OPEN = "open"
        COMPLETE = "complete"

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    merchant = models.ForeignKey("payments.Merchant", on_delete=models.PROTECT, related_name="+")
    customer = models.ForeignKey("payments.Customer", on_delete=models.PROTECT, related_name="credit_checkouts")
    pack = models.ForeignKey(CreditPack, on_delete=models.PROTECT, related_name="checkouts")
    provider = models.CharField(max_length=10)
    session_id = models.CharField(max_length=255, blank=True, db_index=True)
    url = models.URLField(max_length=2000, blank=True)
    success_url = models.URLField(max_length=2000)
    cancel_url = models.URLField(max_length=2000)
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.OPEN)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self):
        return f"checkout {self.pack.code} for {self.customer_id} ({self.status})"
