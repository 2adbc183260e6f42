from config.periodic import ensure_periodic_tasks
from config.seeding import SeedContext, seed_step


@seed_step(order=90)
def periodic_tasks(ctx: SeedContext) -> None:
    created = ensure_periodic_tasks()
    ctx.out(f"Periodic tasks: {created} created (all registered tasks present).")
