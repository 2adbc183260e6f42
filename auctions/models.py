"""Auctions settled on holds: each bid is a pending hold on the bidder's wallet; the
winner's hold is captured to the seller when the auction is finalized, the others voided.

Invariants the database keeps, not just the code:
- one active bid (one live hold) per bidder and auction (partial unique index);
- bids on an auction strictly increase: every accepted bid beats the highest before it,
  so no two bids of an auction have one amount, and `sequence` (1, 2, ...) numbers them
  in the order the auction's row lock let them in;
- amounts, reserve and increment are positive integers in minor units.
"""

import uuid

from django.db import models
from django.db.models import F, Q

from payments.identity.models import Customer, Merchant


class Auction(models.Model):
    class Status(models.TextChoices):
        OPEN = "open"
        SETTLED = "settled"  # the winner's hold captured to the seller, the others voided
        UNSOLD = "unsold"  # no bid, or none at or above the reserve: every hold voided
        CANCELED = "canceled"  # every hold voided

    FINAL = (Status.SETTLED, Status.UNSOLD, Status.CANCELED)

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    merchant = models.ForeignKey(Merchant, on_delete=models.PROTECT, related_name="auctions")
    title = models.CharField(max_length=200)
    currency = models.CharField(max_length=3, help_text="Lowercase ISO 4217; bidders' wallets must be in it.")
    reserve_price = models.BigIntegerField(
        null=True, blank=True, help_text="Minor units. The highest bid must reach it to win; empty: no reserve."
    )
    min_increment = models.BigIntegerField(
        default=1, help_text="Minor units a bid must beat the highest by (the first bid: at least this)."
    )
    starts_at = models.DateTimeField()
    ends_at = models.DateTimeField(db_index=True)
    seller = models.ForeignKey(
        Customer,
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="auctions_sold",
        help_text="Receives the proceeds in their wallet; empty: the merchant's balance.",
    )
    proceeds_account = models.ForeignKey(
        "wallets.Account",
        on_delete=models.PROTECT,
        related_name="+",
        help_text="Where the winning hold is captured to: the seller's wallet or the merchant's balance.",
    )
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.OPEN)
    highest_bid = models.ForeignKey(
        "Bid", null=True, blank=True, on_delete=models.PROTECT, related_name="+", help_text="The current highest bid."
    )
    bid_count = models.PositiveIntegerField(default=0, help_text="Bids accepted so far; numbers them.")
    capture_transfer = models.ForeignKey(
        "wallets.Transfer", null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    finalized_at = models.DateTimeField(null=True, blank=True)
    idempotency_key = models.CharField(
        max_length=255, null=True, blank=True, help_text="The create request's caller-scoped Idempotency-Key."
    )
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-created_at"]
        permissions = [
            ("cancel_auction", "Can cancel an open auction (voids every hold)"),
            ("finalize_auction", "Can finalize an ended auction now"),
        ]
        indexes = [
            # The finalizer's scan: ended auctions still open, in end order.
            models.Index(fields=["ends_at"], condition=Q(status="open"), name="auction_open_by_end"),
        ]
        constraints = [
            models.CheckConstraint(
                condition=Q(reserve_price__isnull=True) | Q(reserve_price__gt=0), name="auction_reserve_positive"
            ),
            models.CheckConstraint(condition=Q(min_increment__gt=0), name="auction_min_increment_positive"),
            models.CheckConstraint(condition=Q(ends_at__gt=F("starts_at")), name="auction_ends_after_start"),
            models.UniqueConstraint(
                fields=["merchant", "idempotency_key"],
                condition=Q(idempotency_key__isnull=False),
                name="auction_idempotency_key_unique_per_merchant",
            ),
        ]

    def __str__(self):
        return f"{self.title} ({self.status})"

    @property
    def hold_owner(self) -> str:
        """The owner of this auction's holds: only the auction services settle them."""
        return f"auction:{self.pk}"

    def minimum_bid(self, highest: int | None) -> int:
        return self.min_increment if highest is None else highest + self.min_increment


class Bid(models.Model):
    class Status(models.TextChoices):
        ACTIVE = "active"  # the bidder's current bid: its hold is pending
        REPLACED = "replaced"  # the bidder bid higher; this hold was voided
        WON = "won"  # captured to the seller
        LOST = "lost"  # outbid, or the reserve was not met: voided at finalize
        CANCELED = "canceled"  # the auction was canceled: voided

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    auction = models.ForeignKey(Auction, on_delete=models.PROTECT, related_name="bids")
    bidder = models.ForeignKey(Customer, on_delete=models.PROTECT, related_name="bids")
    amount = models.BigIntegerField()
    sequence = models.PositiveIntegerField(help_text="1 for the auction's first accepted bid, then 2, 3, ...")
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.ACTIVE)
    hold = models.OneToOneField("wallets.Hold", on_delete=models.PROTECT, related_name="auction_bid")
    replaces = models.OneToOneField("self", null=True, blank=True, on_delete=models.PROTECT, related_name="replaced_by")
    idempotency_key = models.CharField(
        max_length=255, null=True, blank=True, help_text="The bid request's caller-scoped Idempotency-Key."
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-amount"]
        constraints = [
            models.CheckConstraint(condition=Q(amount__gt=0), name="bid_amount_positive"),
            models.UniqueConstraint(
                fields=["auction", "bidder"], condition=Q(status="active"), name="bid_one_active_per_bidder"
            ),
            models.UniqueConstraint(fields=["auction", "amount"], name="bid_amounts_strictly_increase"),
            models.UniqueConstraint(fields=["auction", "sequence"], name="bid_sequence_unique"),
            models.UniqueConstraint(
                fields=["idempotency_key"],
                condition=Q(idempotency_key__isnull=False),
                name="bid_idempotency_key_unique",
            ),
        ]

    def __str__(self):
        return f"bid {self.amount} by {self.bidder_id} ({self.status})"


class AuctionEvent(models.Model):
    """The auction's timeline: its creation, every accepted bid, and how it ended."""

    auction = models.ForeignKey(Auction, on_delete=models.CASCADE, related_name="timeline")
    bid = models.ForeignKey(Bid, null=True, blank=True, on_delete=models.CASCADE, related_name="+")
    type = models.CharField(max_length=40)
    from_status = models.CharField(max_length=10, blank=True)
    to_status = models.CharField(max_length=10, blank=True)
    source = models.CharField(max_length=20, default="api")
    data = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["created_at", "id"]

    def __str__(self):
        return f"{self.type} ({self.created_at:%Y-%m-%d %H:%M:%S})"
