"""Factories for ledger tests. Wallets and funding go through the services, so every
factory-made balance has entries behind it and the audit holds."""

import factory

from payments.tests.factories import CustomerFactory
from wallets.models import Account
from wallets.services import wallet_create, wallet_credit


class WalletFactory(factory.django.DjangoModelFactory):
    """`WalletFactory(balance=500)` opens a usd wallet and credits it 500 through the ledger."""

    class Meta:
        model = Account

    customer = factory.SubFactory(CustomerFactory)
    currency = "usd"

    @classmethod
    def _create(cls, model_class, *args, customer, currency, balance=0, **kwargs):
        wallet = wallet_create(customer=customer, currency=currency)
        if balance:
            wallet_credit(wallet=wallet, amount=balance, reference="factory funding")
        return wallet
