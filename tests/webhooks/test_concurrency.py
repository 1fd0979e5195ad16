"""Two workers at once (PostgreSQL: SKIP LOCKED + advisory locks; SQLite: one writer at a time)."""

from __future__ import annotations

import random
import threading
import time

import pytest
from conftest import WEBHOOK_SECRET
from sqlalchemy import func, select
from stripe_objects import signed
from stripe_world import Renewal

from admin.extensions import db
from admin.models import EV_PROCESSING, EV_QUEUED, Contribution, Payment, StripeEvent
from admin.webhooks.worker import run_forever

from .conftest import count
from .test_worker import expected, renewal_records


def drain(app, concurrency: int, timeout: float = 120) -> None:
    stop = threading.Event()
    t = threading.Thread(target=run_forever, args=(app, concurrency, stop), daemon=True)
    t.start()
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            db.session.rollback()
            left = db.session.scalar(select(func.count()).select_from(StripeEvent)
                                     .where(StripeEvent.status.in_([EV_QUEUED, EV_PROCESSING])))
            if not left:
                break
            time.sleep(0.1)
        else:
            raise AssertionError(f"queue not drained in {timeout}s")
    finally:
        stop.set()
        t.join(30)
    db.session.rollback()


@pytest.mark.postgres
def test_two_workers_on_shuffled_events_of_many_renewals(app, client, offline_processor, world, backend):
    app.config.update(WORKER_BATCH=3, WORKER_IDLE_SLEEP=0.05)
    renewals = [Renewal(world, shape=random.choice(["current", "older"])) for _ in range(12)]
    events = [ev for ren in renewals for ev in ren.events.values()]
    random.Random(7).shuffle(events)
    target = f"/webhooks/stripe/{offline_processor.id}"
    for ev in events:
        body, headers = signed(ev, WEBHOOK_SECRET)
        for _ in range(2):  # every event delivered twice
            assert client.post(target, data=body, headers=headers).status_code == 200
    drain(app, concurrency=2)
    statuses = dict(db.session.execute(select(StripeEvent.status, func.count()).group_by(StripeEvent.status)).all())
    assert statuses.get("error", 0) == 0, db.session.scalars(
        select(StripeEvent.last_error).where(StripeEvent.status == "error")).all()
    assert sum(statuses.values()) == len(events)
    for ren in renewals:
        cid = db.session.scalar(select(Contribution.id).where(Contribution.invoice_id == ren.invoice["id"]))
        assert renewal_records(ren) == expected(ren, cid)
    assert count(Payment) == len(renewals) and count(Contribution) == len(renewals)
