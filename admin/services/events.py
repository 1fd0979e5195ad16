"""Stripe events as Stripe has them (the ``stripe`` source of Listevents)."""

from __future__ import annotations

from sqlalchemy import select

from ..extensions import db
from ..models import PaymentProcessor, StripeEvent
from ..stripe_gateway import Gateway


def list_stripe_events(processor: PaymentProcessor, *, type_: str | None = None, limit: int = 10,
                       starting_after: str | None = None, raw: bool = False) -> list[dict]:
    """Events from Stripe's API (last 30 days), each with paydesk's local status where it has one."""
    page = Gateway.for_processor(processor).list("events", type=type_, limit=limit, starting_after=starting_after)
    events = page.get("data") or []
    ids = [e["id"] for e in events]
    local = {e.event_id: e for e in db.session.scalars(
        select(StripeEvent).where(StripeEvent.processor_id == processor.id, StripeEvent.event_id.in_(ids)))}
    rows = []
    for e in events:
        obj = (e.get("data") or {}).get("object") or {}
        mine = local.get(e["id"])
        row = {"event_id": e["id"], "type": e["type"], "created": e.get("created"),
               "status": mine.status if mine else "not in paydesk",
               "status_reason": mine.status_reason if mine else None,
               "last_error": mine.last_error if mine else None, "object_id": obj.get("id")}
        if raw:
            row["raw"] = e
        rows.append(row)
    return rows
