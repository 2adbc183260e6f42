"""Helpers for tests that send signed events: real-shaped Stripe bodies, signatures."""

import json
import time
from pathlib import Path

from webhooks.signing import sign

EVENTS_DIR = Path(__file__).parent / "stripe_events"


def stripe_event(name: str, *, event_id: str | None = None, replace: dict | None = None, **object_fields) -> dict:
    """A recorded Stripe event (webhooks/tests/stripe_events/<name>.json), with a new id,
    placeholder strings replaced and fields of data.object overridden."""
    text = (EVENTS_DIR / f"{name}.json").read_text()
    for old, new in (replace or {}).items():
        text = text.replace(old, str(new))
    event = json.loads(text)
    if event_id:
        event["id"] = event_id
    event["data"]["object"].update(object_fields)
    return event


def signed_post(
    client,
    url: str,
    body: dict | str | bytes,
    *,
    secret: str,
    header: str = "Stripe-Signature",
    timestamp: int | None = None,
    **extra,
):
    raw = body if isinstance(body, (str, bytes)) else json.dumps(body)
    raw = raw.decode() if isinstance(raw, bytes) else raw
    signature = sign(raw, secret, timestamp=timestamp if timestamp is not None else int(time.time()))
    meta_header = "HTTP_" + header.upper().replace("-", "_")
    return client.generic("POST", url, raw, content_type="application/json", **{meta_header: signature}, **extra)
