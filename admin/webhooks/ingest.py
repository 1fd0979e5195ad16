"""Turn a Stripe event into a ``stripe_event`` row: the log entry and the queue item.

Used by the webhook endpoint and by the jobs that pull events from Stripe
(populate, replay). Inserting is idempotent: one row per (processor, event id),
however many deliveries arrive, at the same moment or not.
"""

from __future__ import annotations

import json
from typing import Any

from ..dbutil import immediate, insert_ignore
from ..extensions import db
from ..models import EV_IGNORED, EV_QUEUED, PaymentProcessor, StripeEvent
from ..stripe_shapes import object_ids
from ..timeutil import utcnow


def event_row_values(processor: PaymentProcessor, event: dict, raw: str, *, source: str = "webhook",
                     status: str = EV_QUEUED) -> dict[str, Any]:
    obj = (event.get("data") or {}).get("object") or {}
    values: dict[str, Any] = {
        "processor_id": processor.id,
        "event_id": str(event["id"]),
        "type": str(event["type"]),
        "created": int(event.get("created") or 0),
        "livemode": bool(event.get("livemode")),
        "api_version": event.get("api_version"),
        "raw": raw,
        "source": source,
        "status": status,
        "attempts": 0,
        "received_at": utcnow(),
        "next_attempt_at": utcnow(),
        "no_receipt": False,
        "refetch": source != "webhook",
    }
    values.update(object_ids(obj) if isinstance(obj, dict) else {})
    if values["livemode"] != processor.livemode and status == EV_QUEUED:
        values["status"] = EV_IGNORED
        values["status_reason"] = (f"livemode mismatch: event is {'live' if values['livemode'] else 'test'}, "
                                   f"processor {processor.name!r} is {processor.mode}")
    return values


def store_event(processor: PaymentProcessor, event: dict, raw: str | None = None, *, source: str = "webhook",
                status: str = EV_QUEUED) -> bool:
    """Insert the event unless (processor, event id) is stored already. True when inserted.

    Commits. Uses the database's own ON CONFLICT DO NOTHING, so concurrent
    deliveries of one event leave exactly one row.
    """
    raw = raw if raw is not None else json.dumps(event)
    values = event_row_values(processor, event, raw, source=source, status=status)
    immediate()  # SQLite: take the write lock now; upgrading a read transaction fails under concurrency
    inserted = insert_ignore(StripeEvent, values, ["processor_id", "event_id"])
    db.session.commit()
    return inserted
