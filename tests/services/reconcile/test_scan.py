"""The ``reconcile.scan`` job: one Stripe page per unit, rows kept as they come, resumable from its
cursor, one per period at a time, its parameters checked at start, and never half a scan shown."""

from __future__ import annotations

from datetime import timedelta

import pytest
import stripe_objects as so
from sqlalchemy import select

from admin.errors import ServiceError
from admin.extensions import db
from admin.models import ReconcileScan
from admin.services.core import jobs
from admin.services.reconcile import scan as rc_scan
from admin.services.reconcile.filter import ReconcileFilter
from admin.timeutil import utcnow
from admin.worker import queues


def _scan_job(proc, **filters):
    return rc_scan.start(proc, ReconcileFilter(**filters)).job


def test_a_killed_scan_resumes_from_its_cursor_and_keeps_each_row_once(world, offline_processor):
    """One Stripe page per unit: a worker that dies after a page (its cursor not saved) is replaced by another
    that reads on from the job's cursor; the page read twice adds no row twice, and no earlier page is read
    again."""
    world.add(*(so.charge(customer=None, payment_intent=None, amount=100 + n) for n in range(250)))
    job = _scan_job(offline_processor, object=["charge"])
    for _ in range(3):  # the scan kept, then two pages of charges
        assert jobs.run_slice(queues.claim_job("w1"), "w1", seconds=0) == "running"
    db.session.refresh(job)
    after_two = dict(job.cursor)
    assert job.done == 200 and after_two["phase"] == "list"
    assert jobs.run_slice(queues.claim_job("w1"), "w1", seconds=0) == "running"  # the third page...
    db.session.refresh(job)
    job.cursor, job.locked_by, job.locked_until = (
        after_two,
        "w1",
        utcnow() - timedelta(seconds=1),
    )  # ...then it died
    db.session.commit()
    assert world.count("GET", r"^/v1/charges$") == 3
    while queues.run_jobs("w2", seconds=60):
        pass
    db.session.refresh(job)
    assert job.status == "done", job.error
    assert world.count("GET", r"^/v1/charges$") == 4  # only the page in flight was read again
    kept = db.session.scalar(select(ReconcileScan))
    assert kept.finished_at is not None and kept.job_id == job.id
    assert len(kept.rows) == len({r["stripe_id"] for r in kept.rows}) == 250
    assert job.result["counts"] == {"compared": 250, "differ": 250}
    latest = rc_scan.latest(offline_processor, ReconcileFilter(object=["charge"]))
    assert latest.id == kept.id and {r.problem for r in latest.rows} == {"missing"}


def test_one_scan_per_period_at_a_time_and_parameters_checked_at_start(world, offline_processor):
    first = _scan_job(offline_processor, days=30)
    assert rc_scan.start(offline_processor, ReconcileFilter(days=30)).job.id == first.id  # the same one
    assert rc_scan.running(offline_processor, ReconcileFilter(days=30)).id == first.id
    assert rc_scan.running(offline_processor, ReconcileFilter(days=31)) is None
    with pytest.raises(ServiceError, match="damaged"):
        jobs.start(rc_scan.KIND, {"days": 999}, processor_id=offline_processor.id)
    with pytest.raises(ServiceError, match="at most 366 days"):
        jobs.start(
            rc_scan.KIND,
            {"days": 7, "since": "2020-01-01T00:00:00", "until": "2026-01-01T00:00:00"},
            processor_id=offline_processor.id,
        )


def test_a_period_with_too_many_objects_fails_the_scan_saying_so(world, offline_processor, monkeypatch):
    monkeypatch.setattr(rc_scan, "MAX_OBJECTS", 150)
    world.add(*(so.charge(customer=None, payment_intent=None, amount=100 + n) for n in range(250)))
    job = _scan_job(offline_processor)
    while queues.run_jobs("w", seconds=60):
        pass
    db.session.refresh(job)
    assert (
        job.status == "failed" and "more than 150 charges in this period: choose a shorter one" in job.error
    )
    assert rc_scan.latest(offline_processor, ReconcileFilter()) is None  # half a scan is never shown
