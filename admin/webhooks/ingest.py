"""Turn a Stripe event into a ``stripe_event`` row: the log entry and the queue item.

Used by the webhook endpoint and by the jobs that pull events from Stripe
(populate, replay). Inserting is idempotent: one row per (processor, event id),
however many deliveries arrive, at the same moment or not.
"""

from __future__ import annotations

import json
from typing import Any

from sqlalchemy import insert

from ..extensions import db
from ..models import EV_IGNORED, EV_QUEUED, PaymentProcessor, StripeEvent
from ..timeutil import utcnow


def _id(value: Any) -> str | None:
    if isinstance(value, str):
        return value or None
    if isinstance(value, dict):
        return value.get("id")
    return None


def subscription_of_invoice(inv: dict) -> str | None:
    """An invoice's subscription in every API shape (top level, ``parent``, or line items)."""
    sub = _id(inv.get("subscription"))
    if sub:
        return sub
    parent = inv.get("parent") or {}
    sub = _id((parent.get("subscription_details") or {}).get("subscription"))
    if sub:
        return sub
    for line in (inv.get("lines") or {}).get("data") or []:
        lp = line.get("parent") or {}
        sub = _id((lp.get("subscription_item_details") or {}).get("subscription")) or _id(line.get("subscription"))
        if sub:
            return sub
    return None


def object_ids(obj: dict) -> dict[str, str | None]:
    """The ids of the Stripe objects an event's data.object touches."""
    kind = obj.get("object")
    oid = obj.get("id")
    ids: dict[str, str | None] = {
        "object_id": oid,
        "customer_id": _id(obj.get("customer")),
        "subscription_id": None,
        "invoice_id": _id(obj.get("invoice")),
        "charge_id": _id(obj.get("charge")) if kind != "charge" else oid,
        "payment_intent_id": _id(obj.get("payment_intent")),
    }
    if kind == "invoice":
        ids["invoice_id"] = oid
        ids["subscription_id"] = subscription_of_invoice(obj)
    elif kind == "payment_intent":
        ids["payment_intent_id"] = oid
        ids["charge_id"] = _id(obj.get("latest_charge"))
    elif kind == "subscription":
        ids["subscription_id"] = oid
    elif kind == "customer":
        ids["customer_id"] = oid
    elif kind == "checkout.session":
        ids["subscription_id"] = _id(obj.get("subscription"))
    elif kind == "invoice_payment":
        payment = obj.get("payment") or {}
        ids["payment_intent_id"] = _id(payment.get("payment_intent"))
        ids["charge_id"] = _id(payment.get("charge"))
    if kind == "customer":
        ids["object_id"] = None  # the customer key already covers it
    return ids


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
    dialect = db.session.get_bind().dialect.name
    if dialect == "postgresql":
        from sqlalchemy.dialects.postgresql import insert as dialect_insert
    elif dialect == "sqlite":
        from sqlalchemy.dialects.sqlite import insert as dialect_insert
    else:  # pragma: no cover - other databases fall back to a plain insert
        dialect_insert = insert
    stmt = dialect_insert(StripeEvent).values(**values)
    if hasattr(stmt, "on_conflict_do_nothing"):
        stmt = stmt.on_conflict_do_nothing(index_elements=["processor_id", "event_id"])
    result = db.session.execute(stmt)
    db.session.commit()
    return bool(result.rowcount)
