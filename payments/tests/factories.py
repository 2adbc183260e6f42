import factory

from payments.identity.models import Customer, Merchant
from payments.identity.services import merchant_create


class MerchantFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Merchant

    name = factory.Sequence(lambda n: f"Merchant {n}")

    @classmethod
    def _create(cls, model_class, *args, **kwargs):
        quota = kwargs.pop("quota", None)
        merchant = merchant_create(name=kwargs.pop("name"), quota=quota, **kwargs)
        return merchant


class CustomerFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Customer

    merchant = factory.SubFactory(MerchantFactory)
    external_id = factory.Sequence(lambda n: f"cust-{n}")
    email = factory.LazyAttribute(lambda o: f"{o.external_id}@example.com")
    name = factory.Sequence(lambda n: f"Customer {n}")
