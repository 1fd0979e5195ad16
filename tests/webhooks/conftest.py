"""Fixtures for the webhook pipeline: a Stripe world behind ``responses`` and a way to feed events."""

from __future__ import annotations

import pytest
import responses
from sqlalchemy import func, select
from stripe_world import StripeWorld

from admin.extensions import db
from admin.models import StripeEvent
from admin.webhooks.ingest import store_event
from admin.webhooks.worker import run_once


@pytest.fixture
def world(offline_processor):
    with responses.RequestsMock(assert_all_requests_are_fired=False) as rsps:
        yield StripeWorld(rsps)


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
