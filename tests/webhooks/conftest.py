"""Helpers for the webhook pipeline tests: feed events through the worker, count rows."""

from __future__ import annotations

from sqlalchemy import func, select

from admin.extensions import db
from admin.models import StripeEvent
from admin.webhooks.ingest import store_event
from admin.worker.loop import run_once


def feed(processor, *events: dict, source: str = "webhook", no_receipt: bool = False) -> list[StripeEvent]:
    """Store each event (as the endpoint would) and let the worker process it before the next arrives."""
    rows = []
    for ev in events:
        store_event(processor, ev, source=source)
        if no_receipt:
            row = db.session.scalar(select(StripeEvent).where(StripeEvent.event_id == ev["id"]))
            row.no_receipt = True
            db.session.commit()
        run_once()
        rows.append(db.session.scalar(select(StripeEvent).where(StripeEvent.event_id == ev["id"])))
    return rows


def count(model, *where) -> int:
    return db.session.scalar(select(func.count()).select_from(model).where(*where))
