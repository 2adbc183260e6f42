import factory

from credits.models import CreditPack
from payments.tests.factories import MerchantFactory


class CreditPackFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = CreditPack

    merchant = factory.SubFactory(MerchantFactory)
    code = factory.Sequence(lambda n: f"pack-{n}")
    name = factory.LazyAttribute(lambda o: f"{o.credits} credits")
    credits = 100
    stripe_price_id = factory.Sequence(lambda n: f"price_test_{n}")
    price_amount = 1000
    currency = "usd"
