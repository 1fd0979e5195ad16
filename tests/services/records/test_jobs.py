"""The record jobs talk to Stripe with no database write lock held: on SQLite (one writer at a time) a
unit that held the lock while Stripe answered would hold every webhook behind it."""

from __future__ import annotations

import sqlite3
import threading

from conftest import WEBHOOK_SECRET
from sqlalchemy import func, select
from stripe_objects import signed
from stripe_world import Renewal

from admin.extensions import db
from admin.models import Contribution, ContributionRecur, Payment, StripeEvent, SubscriptionCheck
from admin.services.core import jobs
from admin.worker import queues


def write_locked() -> bool:
    """Whether another connection holds SQLite's write lock right now (asked without waiting)."""
    con = sqlite3.connect(db.engine.url.database, timeout=0)
    try:
        con.execute("BEGIN IMMEDIATE")
        con.rollback()
        return False
    except sqlite3.OperationalError:
        return True
    finally:
        con.close()


def run(kind: str, processor_id: int):
    job = jobs.start(kind, {}, processor_id=processor_id).job
    while queues.run_jobs("test", seconds=60):
        pass
    db.session.refresh(job)
    assert job.status == "done", job.error
    return job


def test_import_and_compare_ask_stripe_with_no_write_lock_held(app, world, offline_processor):
    renewals = [Renewal(world, amount=1000), Renewal(world, amount=2000, shape="older")]
    ppid = offline_processor.id
    locked: list[str] = []
    webhook: list[tuple[bool, int | None]] = []  # (stored while Stripe was still answering, HTTP status)

    def deliver() -> None:
        body, headers = signed(renewals[0].events["invoice.paid"], WEBHOOK_SECRET)
        status = app.test_client().post(f"/webhooks/stripe/{ppid}", data=body, headers=headers)
        webhook.append((True, status.status_code))

    def stripe_is_slow(method: str, path: str) -> None:
        if write_locked():
            locked.append(f"{method} {path}")
        if path == "/v1/invoices" and not webhook:  # a webhook arrives while Stripe takes its time
            t = threading.Thread(target=deliver)
            t.start()
            t.join(timeout=20)  # SQLite's busy timeout is 30 s: a held lock would keep it waiting past this
            if t.is_alive():
                webhook.append((False, None))

    world.on_request = stripe_is_slow
    job = run("imports.subscriptions", ppid)
    assert job.result["counts"] == {"created": 2}
    assert webhook == [(True, 200)]
    assert db.session.scalar(select(func.count()).select_from(StripeEvent)) == 1
    run("subscriptions.compare", ppid)
    assert locked == []  # not one request to Stripe while the database was locked for writing
    assert db.session.scalar(select(func.count()).select_from(ContributionRecur)) == 2
    assert db.session.scalar(select(func.count()).select_from(Contribution)) == 2
    assert db.session.scalar(select(func.count()).select_from(Payment)) == 2
    assert [c.differs for c in db.session.scalars(select(SubscriptionCheck))] == [False, False]
