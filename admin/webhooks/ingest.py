"""Turn a Stripe event into a ``stripe_event`` row: the log entry and the queue item.

Used by the webhook endpoint and by the jobs that pull events from Stripe
(populate, replay). Inserting is idempotent: one row per (processor, event id),
however many deliveries arrive, at the same moment or not.

``parse_event`` is the door: it checks the envelope's types once (what the row's
columns take: strings of bounded length, a Unix time, objects where objects belong),
so nothing after it meets a list where it expects an object or a number too large
for its column. What is inside ``data.object`` beyond the ids is the handlers' to
check (they end the event in ``error`` with a message).
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from admin.dbutil import EVENTS_CHANNEL, immediate, insert_ignore
from admin.extensions import db
from admin.models import EV_IGNORED, EV_QUEUED, PaymentProcessor, StripeEvent
from admin.stripe_shapes import object_ids
from admin.timeutil import utcnow

if TYPE_CHECKING:
    from admin.services.settings.processors import ProcessorRef

MAX_DEPTH = 64  # Stripe's deepest payloads (expanded objects in objects) stay well below this
MAX_CREATED = 253402300799  # 9999-12-31T23:59:59Z: the last second a datetime can hold
ID_COLUMNS = ("object_id", "customer_id", "subscription_id", "invoice_id", "charge_id", "payment_intent_id")


class EnvelopeError(ValueError):
    """A signed body that is not a Stripe event paydesk can store; ``reason`` is short and safe to show."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


def parse_event(text: str) -> dict:
    """The event in ``text`` (already verified and decoded as UTF-8), or :class:`EnvelopeError`."""
    try:
        event = json.loads(text)
    except RecursionError:
        raise EnvelopeError("body is nested too deeply") from None
    except ValueError:
        raise EnvelopeError("body is not JSON") from None
    if not isinstance(event, dict):
        raise EnvelopeError("not a Stripe event: the body is not a JSON object")
    if not _depth_within(event, MAX_DEPTH):
        raise EnvelopeError(f"body is nested more than {MAX_DEPTH} levels deep")
    _text(event, "id", 255, required=True)
    _text(event, "type", 100, required=True)
    _text(event, "api_version", 64)
    created = event.get("created")
    if created is not None and (type(created) is not int or not 0 <= created <= MAX_CREATED):
        raise EnvelopeError("created must be a Unix time (an integer number of seconds)")
    if event.get("livemode") is not None and not isinstance(event["livemode"], bool):
        raise EnvelopeError("livemode must be true or false")
    data = event.get("data")
    if not isinstance(data, dict):
        raise EnvelopeError("data must be an object")
    obj = data.get("object")
    if not isinstance(obj, dict):
        raise EnvelopeError("data.object must be an object")
    _text(obj, "id", 255, where="data.object.")
    _text(obj, "object", 100, where="data.object.")
    for column, value in object_ids(obj).items():
        if value is not None:
            _check_text(value, 255, f"the {column.replace('_', ' ')} in data.object")
    return event


def _text(obj: dict, key: str, max_len: int, *, required: bool = False, where: str = "") -> None:
    value = obj.get(key)
    if value is None:
        if required:
            raise EnvelopeError(f"not a Stripe event: {where}{key} is required")
        return
    if not isinstance(value, str):
        raise EnvelopeError(f"{where}{key} must be a string")
    if required and not value:
        raise EnvelopeError(f"not a Stripe event: {where}{key} is empty")
    _check_text(value, max_len, where + key)


def _check_text(value: str, max_len: int, name: str) -> None:
    if len(value) > max_len:
        raise EnvelopeError(f"{name} is longer than {max_len} characters")
    if any(ord(c) < 32 or ord(c) == 127 for c in value):
        raise EnvelopeError(f"{name} contains control characters")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise EnvelopeError(f"{name} is not valid Unicode text") from None


def _depth_within(value: object, limit: int) -> bool:
    """True when no container in ``value`` is nested more than ``limit`` levels (checked without recursion)."""
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if depth > limit:
            return False
        children = item.values() if isinstance(item, dict) else item
        stack.extend((c, depth + 1) for c in children if isinstance(c, dict | list))
    return True


def event_row_values(
    processor: PaymentProcessor | ProcessorRef,
    event: dict,
    raw: str,
    *,
    source: str = "webhook",
    status: str = EV_QUEUED,
) -> dict[str, Any]:
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
        values["status_reason"] = (
            f"livemode mismatch: event is {'live' if values['livemode'] else 'test'}, "
            f"processor {processor.name!r} is {processor.mode}"
        )
    return values


def store_event(
    processor: PaymentProcessor | ProcessorRef,
    event: dict,
    raw: str | None = None,
    *,
    source: str = "webhook",
    status: str = EV_QUEUED,
) -> bool:
    """Insert the event unless (processor, event id) is stored already. True when inserted.

    Commits. Uses the database's own ON CONFLICT DO NOTHING, so concurrent
    deliveries of one event leave exactly one row.
    """
    raw = raw if raw is not None else json.dumps(event)
    values = event_row_values(processor, event, raw, source=source, status=status)
    immediate()  # SQLite: take the write lock now; upgrading a read transaction fails under concurrency
    # a queued event wakes an idle worker at once (PostgreSQL; elsewhere the worker polls)
    notify = EVENTS_CHANNEL if status == EV_QUEUED else None
    inserted = insert_ignore(StripeEvent, values, ["processor_id", "event_id"], notify=notify)
    db.session.commit()
    return inserted
