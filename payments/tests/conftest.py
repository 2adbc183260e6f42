import pytest

from payments.tests.fake_wallets import FakeEsewa, FakeKhalti


@pytest.fixture
def esewa_fake(settings):
    """A fake eSewa on a free loopback port, and Paydesk pointed at it (the docs' test
    product code and secret)."""
    fake = FakeEsewa()
    settings.ESEWA_BASE_URL = fake.url
    settings.ESEWA_PRODUCT_CODE = fake.product_code
    settings.ESEWA_SECRET_KEY = fake.secret
    yield fake
    fake.close()


@pytest.fixture
def khalti_fake(settings):
    """A fake Khalti on a free loopback port, and Paydesk pointed at it."""
    fake = FakeKhalti()
    settings.KHALTI_BASE_URL = fake.base_url
    settings.KHALTI_SECRET_KEY = fake.secret
    yield fake
    fake.close()
