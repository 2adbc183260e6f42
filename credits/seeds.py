"""Demo credit packs for the demo merchant (idempotent), a starting balance for the
first demo customer, and (DEBUG only) an end-user token for trying /api/v1/me/credits."""

import time

import jwt
from django.conf import settings

from config.seeding import SeedContext, seed_step
from payments.identity.models import Customer

from .models import CreditPack, Grant
from .services import credits_grant

# (code, name, credits, Stripe price id, display price in cents, expires_in_days)
DEMO_PACKS = [
    ("starter-100", "Starter · 100 credits", 100, "price_PaydeskStarter100", 1000, None),
    ("pro-500", "Pro · 500 credits", 500, "price_PaydeskPro500", 2500, None),
    ("trial-20", "Trial · 20 credits, 30 days", 20, "", 100, 30),
]
WELCOME_REASON = "demo: welcome credits"


@seed_step(order=40)
def demo_credit_packs(ctx: SeedContext) -> None:
    merchant = ctx.merchant
    if merchant is None:
        return
    for code, name, credits, price_id, amount, days in DEMO_PACKS:
        CreditPack.objects.get_or_create(
            merchant=merchant,
            code=code,
            defaults={
                "name": name,
                "credits": credits,
                "stripe_price_id": price_id,
                "price_amount": amount,
                "currency": "usd",
                "expires_in_days": days,
            },
        )
    ctx.out(f"Credit packs: {', '.join(CreditPack.objects.filter(merchant=merchant).values_list('code', flat=True))}.")
    customer = Customer.objects.filter(merchant=merchant, external_id="demo-1").first()
    if customer is None:
        return
    if not Grant.objects.filter(customer=customer, reason=WELCOME_REASON).exists():
        credits_grant(customer=customer, units=100, source=Grant.Source.MERCHANT, reason=WELCOME_REASON)
    if ctx.debug:
        token = jwt.encode(
            {"sub": str(customer.pk), "exp": int(time.time()) + 30 * 86400},
            settings.JWT_SECRET,
            algorithm=settings.JWT_ALGORITHM,
        )
        ctx.out(f"Demo end-user JWT for demo-1 (DEBUG only, 30 days): {token}")
