import hashlib
import hmac

from django.conf import settings
from django.contrib.auth import get_user_model
from tqdm import tqdm

from config.seeding import SeedContext, seed_step
from payments.identity.models import ApiKey, Category, Customer, Region
from payments.identity.services import api_key_create, hash_api_key, merchant_get_or_create

REGIONS = [
    ("US", "United States", "usd"),
    ("GB", "United Kingdom", "gbp"),
    ("DE", "Germany", "eur"),
    ("FR", "France", "eur"),
    ("JP", "Japan", "jpy"),
    ("BR", "Brazil", "brl"),
    ("IN", "India", "inr"),
    ("KE", "Kenya", "kes"),
]
CATEGORIES = [
    ("retail", "Retail"),
    ("digital-goods", "Digital goods"),
    ("services", "Services"),
    ("marketplace", "Marketplace"),
    ("saas", "Software as a service"),
]
DEMO_MERCHANT = "Demo Shop"
DEMO_STAFF = ("admin", "admin")


def demo_api_key() -> str:
    """The demo key is derived from SECRET_KEY: the same on every `seed` run of one
    installation (so seeding stays idempotent and can print it), unguessable without it."""
    digest = hmac.new(settings.SECRET_KEY.encode(), b"paydesk-demo-api-key", hashlib.sha256).hexdigest()
    return "pd_test_demo" + digest[:28]


@seed_step(order=10)
def reference_data(ctx: SeedContext) -> None:
    for code, name, currency in REGIONS:
        Region.objects.get_or_create(code=code, defaults={"name": name, "currency": currency})
    for code, name in CATEGORIES:
        Category.objects.get_or_create(code=code, defaults={"name": name})
    ctx.out(f"Regions: {Region.objects.count()}, categories: {Category.objects.count()}.")


@seed_step(order=20)
def demo_merchant(ctx: SeedContext) -> None:
    if not ctx.wants_demo:
        # A production database gets no demo merchant, and no working key derived from
        # SECRET_KEY printed into deploy logs.
        ctx.out("DEBUG is off: no demo merchant, API key or customers (pass --demo to create them).")
        return
    merchant, created = merchant_get_or_create(
        name=DEMO_MERCHANT, region=Region.objects.get(code="US"), category=Category.objects.get(code="retail")
    )
    ctx.merchant = merchant
    raw_key = demo_api_key()
    if not ApiKey.objects.filter(key_hash=hash_api_key(raw_key)).exists():
        api_key_create(merchant=merchant, raw_key=raw_key, name="demo")
    ctx.out(f"Demo merchant: {merchant.name} ({merchant.pk}){' created' if created else ''}.")
    ctx.out(f"Demo API key: {raw_key}")

    existing = Customer.objects.filter(merchant=merchant, external_id__startswith="demo-").count()
    missing = max(ctx.customers - existing, 0)
    if missing:
        batch = []
        for i in tqdm(range(ctx.customers), desc="demo customers", disable=ctx.customers < 1000):
            batch.append(
                Customer(
                    merchant=merchant,
                    external_id=f"demo-{i + 1}",
                    email=f"demo{i + 1}@example.com",
                    name=f"Demo Customer {i + 1}",
                )
            )
            if len(batch) >= 1000:
                Customer.objects.bulk_create(batch, ignore_conflicts=True)
                batch = []
        Customer.objects.bulk_create(batch, ignore_conflicts=True)
    ctx.out(f"Demo customers: {Customer.objects.filter(merchant=merchant).count()}.")


@seed_step(order=30)
def demo_staff(ctx: SeedContext) -> None:
    if not ctx.debug:
        ctx.out("DEBUG is off: no demo staff user (use `manage.py createsuperuser`).")
        return
    User = get_user_model()
    username, password = DEMO_STAFF
    if not User.objects.filter(username=username).exists():
        User.objects.create_superuser(username=username, email="admin@example.com", password=password)
    admin_url = settings.PUBLIC_BASE_URL.rstrip("/") + "/admin/"
    ctx.out(f"Demo staff login (DEBUG only): {username} / {password} at {admin_url}")
