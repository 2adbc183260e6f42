"""Fault injection for crash tests: named points on the money path where a test makes the
request die as a crash would.

    fault_point("provider_called")   # in a service: no-op unless a test armed that point

- In-process (pytest): `with armed("provider_called"): ...` makes the next pass through
  that point raise Crash, a BaseException, so no `except Exception` in a view, a service
  or DRF turns it into a response: every open transaction rolls back and the
  Idempotency-Key is left in flight, exactly what a process dying there leaves behind.
- A real process (gunicorn): PAYDESK_FAULT_KILL=<point> PAYDESK_FAULT_ONCE=<file> makes
  the first process to reach the point SIGKILL itself (creating the file, so the worker
  gunicorn starts in its place and the retry run on).

The points, in the order a request reaches them:
  idempotency_claimed   the key is claimed (committed), nothing else done
  intent_committed      the first transaction of a request that calls a provider committed
                        the row that carries the key (payment, charge, refund, order)
  provider_called       the provider answered; its answer is not recorded yet
  before_done           the effect is done, the key not yet marked done
  after_commit          everything committed; the response is not sent yet
"""

import os
import signal
from contextlib import contextmanager

POINTS = frozenset({"idempotency_claimed", "intent_committed", "provider_called", "before_done", "after_commit"})

_armed: set[str] = set()


class Crash(BaseException):  # noqa: N818 - it stands for the process dying, not an error to handle
    """The simulated death of the process at a fault point."""


def fault_point(name: str) -> None:
    if name in _armed:
        _armed.discard(name)  # one crash per arming: the retry runs on
        raise Crash(name)
    if os.environ.get("PAYDESK_FAULT_KILL") == name:
        once = os.environ.get("PAYDESK_FAULT_ONCE", "")
        if once:
            try:
                fd = os.open(once, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
            except FileExistsError:
                return
            os.close(fd)
        os.kill(os.getpid(), signal.SIGKILL)


@contextmanager
def armed(name: str):
    """Arm one fault point for the block (tests only)."""
    if name not in POINTS:
        raise ValueError(f"unknown fault point {name!r}")
    _armed.add(name)
    try:
        yield
    finally:
        _armed.discard(name)
