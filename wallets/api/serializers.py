"""Output shapes of the wallets API (inputs are nested in each view)."""

from rest_framework import serializers

from config.api.outputs import ModelOut
from wallets.models import Account, Entry, Hold


class WalletOut(ModelOut):
    customer = serializers.UUIDField(source="customer_id", read_only=True)
    available = serializers.IntegerField(read_only=True)

    class Meta:
        model = Account
        fields = ["id", "customer", "currency", "balance", "available", "held"]


class EntryOut(ModelOut):
    """One line of a wallet's ledger. A transfer touches a wallet at most once, so its id
    (a UUID, as every id in the API) names the line; the entry's own row number is
    internal and not shown."""

    type = serializers.CharField(source="transfer.kind", read_only=True)
    reference = serializers.CharField(source="transfer.reference", read_only=True)
    transfer = serializers.UUIDField(source="transfer_id", read_only=True, help_text="The transfer this line is of.")

    class Meta:
        model = Entry
        fields = ["transfer", "amount", "balance_after", "type", "reference", "created_at"]


class HoldOut(ModelOut):
    wallet = serializers.UUIDField(source="account_id", read_only=True)
    customer = serializers.UUIDField(source="account.customer_id", read_only=True)
    currency = serializers.CharField(source="account.currency", read_only=True)
    capture_transfer = serializers.UUIDField(source="capture_transfer_id", read_only=True, allow_null=True)
    # A plain string in the schema: another "status" enum would collide with the payments' ones.
    status = serializers.CharField(read_only=True, help_text="pending, captured, voided or expired")

    class Meta:
        model = Hold
        fields = [
            "id",
            "wallet",
            "customer",
            "amount",
            "captured_amount",
            "currency",
            "status",
            "expires_at",
            "reference",
            "capture_transfer",
            "created_at",
        ]
