"""Two workers at once (PostgreSQL: SKIP LOCKED + advisory locks; SQLite: one writer at a time)."""

from __future__ import annotations

import random
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
from conftest import WEBHOOK_SECRET
from sqlalchemy import func, select
from stripe_objects import signed
from stripe_world import Renewal

from admin.extensions import db
from admin.models import EV_PROCESSING, EV_QUEUED, Contribution, Payment, StripeEvent
from admin.worker.loop import run_forever

from .conftest import count
from .test_worker import expected, renewal_records


def wait_drained(timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        db.session.rollback()
        left = db.session.scalar(
            select(func.count())
            .select_from(StripeEvent)
            .where(StripeEvent.status.in_([EV_QUEUED, EV_PROCESSING]))
        )
        if not left:
            return
        time.sleep(0.1)
    raise AssertionError(f"queue not drained in {timeout}s")


@pytest.mark.postgres
def test_five_concurrent_deliveries_of_every_event_while_two_workers_run(
    app, offline_processor, world, backend
):
    """Shuffled events of many renewals, each delivered five times at once, while two workers already run:
    every renewal ends with exactly its one contribution and one payment."""
    app.config.update(WORKER_BATCH=3, WORKER_IDLE_SLEEP=0.02)
    renewals = [Renewal(world, shape=random.choice(["current", "older"])) for _ in range(12)]
    events = [ev for ren in renewals for ev in ren.events.values()]
    random.Random(7).shuffle(events)
    target = f"/webhooks/stripe/{offline_processor.id}"
    stop = threading.Event()
    workers = threading.Thread(target=run_forever, args=(app, 2, stop), daemon=True)
    workers.start()
    codes: list[int] = []

    def deliver(ev: dict) -> None:
        body, headers = signed(ev, WEBHOOK_SECRET)
        with app.test_client() as c:
            codes.append(c.post(target, data=body, headers=headers).status_code)

    try:
        with ThreadPoolExecutor(max_workers=8) as pool:
            list(pool.map(deliver, [ev for ev in events for _ in range(5)]))
        wait_drained()
    finally:
        stop.set()
        workers.join(30)
    db.session.rollback()
    assert codes == [200] * (5 * len(events))
    statuses = dict(
        db.session.execute(select(StripeEvent.status, func.count()).group_by(StripeEvent.status)).all()
    )
    assert statuses.get("error", 0) == 0, db.session.scalars(
        select(StripeEvent.last_error).where(StripeEvent.status == "error")
    ).all()
    assert sum(statuses.values()) == len(events)
    for ren in renewals:
        cid = db.session.scalar(select(Contribution.id).where(Contribution.invoice_id == ren.invoice["id"]))
        assert renewal_records(ren) == expected(ren, cid)
    assert count(Payment) == len(renewals) and count(Contribution) == len(renewals)
