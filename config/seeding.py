"""`manage.py seed` steps, contributed by each app in its `seeds.py` module
(discovered like admin.py), run in `order`. Every step is idempotent."""

from collections.abc import Callable
from dataclasses import dataclass


@dataclass
class SeedContext:
    out: Callable[[str], None]
    customers: int
    debug: bool
    demo: bool = False  # --demo: demo data even with DEBUG off
    merchant: object = None  # the demo merchant, set by the identity step (None: no demo data)

    @property
    def wants_demo(self) -> bool:
        """Demo data (merchant, key, customers) in DEBUG, or when asked for with --demo."""
        return self.debug or self.demo


_STEPS: list[tuple[int, str, Callable[[SeedContext], None]]] = []


def seed_step(order: int):
    def decorator(func):
        if all(step[2] is not func for step in _STEPS):
            _STEPS.append((order, func.__module__ + "." + func.__name__, func))
        return func

    return decorator


def steps():
    return [func for _, _, func in sorted(_STEPS, key=lambda s: (s[0], s[1]))]
