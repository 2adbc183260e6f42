from config.periodic import ensure_periodic_tasks
from config.seeding import SeedContext, seed_step
from config.staff_groups import staff_groups_ensure


@seed_step(order=5)
def staff_groups(ctx: SeedContext) -> None:
    counts = staff_groups_ensure()
    ctx.out(
        "Staff groups: "
        + ", ".join(f"{name} ({n} permissions)" for name, n in counts.items())
        + " (support sees, finance also moves money)."
    )


@seed_step(order=90)
def periodic_tasks(ctx: SeedContext) -> None:
    created = ensure_periodic_tasks()
    ctx.out(f"Periodic tasks: {created} created (all registered tasks present).")
