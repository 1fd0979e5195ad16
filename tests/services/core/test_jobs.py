"""The one job mechanism: one run per identical job, progress and cursor kept, resumes after a crash,
cancel, failures shown, and the work attributed to whoever started it."""

from __future__ import annotations

import threading
from datetime import timedelta

import pytest
from sqlalchemy import func, select

from admin.errors import ServiceError
from admin.extensions import db
from admin.models import AuditLog, StripeEvent
from admin.models.jobs import Job
from admin.services.core import audit, jobs
from admin.timeutil import utcnow
from admin.worker import queues


def _events(processor, n: int) -> list[int]:
    rows = [
        StripeEvent(
            processor_id=processor.id,
            event_id=f"evt_job{i:03d}",
            type="invoice.paid",
            created=1_700_000_000 + i,
            raw="{}",
            status="error",
            last_error="boom",
        )
        for i in range(n)
    ]
    db.session.add_all(rows)
    db.session.commit()
    return [r.id for r in rows]


def _ignored() -> int:
    return db.session.scalar(
        select(func.count()).select_from(StripeEvent).where(StripeEvent.status == "ignored")
    )


def test_the_same_job_started_twice_is_one_job(offline_processor):
    params = {"filter": {"status": ["error"]}, "reason": "test data"}
    first = jobs.start("events.ignore", params)
    second = jobs.start("events.ignore", dict(params))
    assert first.created and not second.created and first.job.id == second.job.id
    other = jobs.start("events.ignore", {**params, "reason": "another reason"})
    assert other.created and other.job.id != first.job.id
    assert (
        db.session.scalar(select(func.count()).select_from(AuditLog).where(AuditLog.action == "job.start"))
        == 2
    )


@pytest.mark.postgres
def test_two_staff_starting_the_same_job_at_once_get_one_run(app, offline_processor, backend):
    barrier = threading.Barrier(4)
    ids: list[int] = []

    def start():
        with app.app_context():
            barrier.wait()
            ids.append(
                jobs.start(
                    "events.cleanup", {"older_than": "30 days", "include_errors": False, "ppid": None}
                ).job.id
            )
            db.session.remove()

    threads = [threading.Thread(target=start) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(ids) == 4 and len(set(ids)) == 1
    assert db.session.scalar(select(func.count()).select_from(Job)) == 1


def test_a_job_runs_in_slices_keeps_its_cursor_and_finishes(offline_processor):
    _events(offline_processor, 7)
    job = jobs.start("events.ignore", {"filter": {"status": ["error"]}, "reason": "bulk test"}).job
    claimed = queues.claim_job("w1")
    assert claimed.id == job.id
    assert jobs.run_slice(claimed, "w1", seconds=0) == "running"  # one unit, then the slice ends
    db.session.refresh(job)
    assert (job.status, job.done, job.total, job.locked_by) == ("running", 1, 7, None)
    assert job.cursor["last_id"] and _ignored() == 1
    while queues.run_jobs("w2", seconds=0):
        pass
    db.session.refresh(job)
    assert (job.status, job.done, job.percent, job.active_key) == ("done", 7, 100, None)
    assert job.result["counts"] == {"ignored": 7} and _ignored() == 7


def test_a_job_whose_worker_died_is_resumed_from_its_cursor_after_the_lease(offline_processor):
    ids = _events(offline_processor, 5)
    job = jobs.start("events.ignore", {"ids": ids, "reason": "crash test"}).job
    jobs.run_slice(queues.claim_job("dying"), "dying", seconds=0)
    # the worker takes the lease for the next slice and is killed: nobody else may run it meanwhile...
    held = queues.claim_job("dying")
    assert held is not None and queues.claim_job("other") is None
    # ...until its lease runs out
    held.locked_until = utcnow() - timedelta(seconds=1)
    db.session.commit()
    assert queues.run_jobs("other", seconds=30) == 1
    db.session.refresh(job)
    assert (job.status, job.done) == ("done", 5)
    entries = db.session.scalar(
        select(func.count()).select_from(AuditLog).where(AuditLog.action == "event.ignore")
    )
    assert entries == 5  # each event once, none repeated or skipped


def test_cancel_stops_a_queued_job_at_once_and_a_running_one_after_its_unit(offline_processor):
    ids = _events(offline_processor, 4)
    queued = jobs.start("events.ignore", {"ids": ids[:2], "reason": "a"}).job
    jobs.cancel(queued)
    assert queued.status == "cancelled" and queued.active_key is None
    with pytest.raises(ServiceError):
        jobs.cancel(queued)

    running = jobs.start("events.ignore", {"ids": ids[2:], "reason": "b"}).job
    held = queues.claim_job("w")
    jobs.run_slice(held, "w", seconds=0)
    held = queues.claim_job("w")
    jobs.cancel(held)  # held by a runner: it is asked to stop
    assert held.cancel_requested and held.status == "running"
    assert jobs.run_slice(held, "w") == "cancelled"
    db.session.refresh(running)
    assert running.status == "cancelled" and running.done == 1 + 1 and _ignored() == 2


def test_a_failing_job_says_why_and_can_be_resumed(offline_processor):
    bad = {"older_than": "2 seconds", "include_errors": False, "ppid": None}
    with pytest.raises(ServiceError, match="at least a day"):  # its parameter class refuses it at start
        jobs.start("events.cleanup", bad)
    job = jobs.start("events.cleanup", {**bad, "older_than": "2 days"}).job
    job.params = bad  # a job stored before the bound existed
    db.session.commit()
    assert queues.run_jobs("w") == 1
    db.session.refresh(job)
    assert job.status == "failed" and "at least a day" in job.error
    # an identical job may be started again now that this one has ended
    again = jobs.start("events.cleanup", {**bad, "older_than": "2 days"})
    assert again.created
    jobs.cancel(again.job)
    jobs.resume(job)
    assert job.status == "queued" and job.error is None


def test_what_a_job_does_is_recorded_as_done_by_whoever_started_it(offline_processor):
    from admin.services.staff.users import create_user

    ids = _events(offline_processor, 2)
    carol = create_user("carol@example.org", "correct horse battery", "operator")
    with audit.acting_as(carol.id, "carol@example.org"):
        job = jobs.start("events.ignore", {"ids": ids, "reason": "for carol"}).job
    assert job.actor == "carol@example.org"
    queues.run_jobs("w", seconds=30)
    actors = set(db.session.scalars(select(AuditLog.actor).where(AuditLog.action == "event.ignore")))
    assert actors == {"carol@example.org"}
    reasons = set(db.session.scalars(select(StripeEvent.status_reason)))
    assert reasons == {"marked ignored by carol@example.org: for carol"}


# -- long units and passing failures ---------------------------------------------------------------

_slow_units: list[str] = []


@jobs.job_kind("test.slow_units", title=lambda p: "slow units (test)")
def _slow(ctx):
    import time as _time

    for i in range(ctx.cursor.get("next", 0), 2):
        _time.sleep(ctx.params["seconds"])  # one unit longer than the lease
        _slow_units.append(f"unit {i}")
        ctx.cursor["next"] = i + 1
        ctx.done += 1
        yield


jobs.register(_slow)


def test_a_unit_longer_than_the_lease_keeps_its_job_from_other_workers(app, offline_processor):
    app.config["WORKER_LEASE_SECONDS"] = 3  # renewed every second while a unit runs
    _slow_units.clear()
    job = jobs.start("test.slow_units", {"seconds": 4.5}).job
    held = queues.claim_job("slow")
    taken: list = []

    def other_worker():
        import time as _time

        with app.app_context():
            _time.sleep(3.5)  # past the lease the slow worker took at its claim
            taken.append(queues.claim_job("other"))
            db.session.remove()

    t = threading.Thread(target=other_worker)
    t.start()
    assert jobs.run_slice(held, "slow", seconds=0) == "running"
    t.join()
    assert taken == [None]  # the heartbeat kept the lease: nobody else ran the unit
    assert _slow_units == ["unit 0"]
    db.session.refresh(job)
    assert job.done == 1


_flaky_calls: list[int] = []


@jobs.job_kind("test.flaky_units", title=lambda p: "flaky units (test)")
def _flaky(ctx):
    from admin.stripe_gateway import GatewayError

    for i in range(ctx.cursor.get("next", 0), 8):
        _flaky_calls.append(i)
        if _flaky_calls.count(i) == 1:  # every unit fails once for a passing reason, then works
            raise GatewayError("Stripe is busy", http_status=503, transient=True)
        ctx.cursor["next"] = i + 1
        ctx.done += 1
        yield


jobs.register(_flaky)


def test_passing_failures_are_counted_afresh_after_each_unit_that_works(offline_processor):
    """Eight passing failures over a long job's life, never two in a row: the job finishes."""
    _flaky_calls.clear()
    job = jobs.start("test.flaky_units", {}).job
    for _ in range(40):
        held = queues.claim_job("w")
        if held is None:
            db.session.refresh(job)
            if job.status != "running":
                break
            job.locked_until = None  # skip the backoff wait in the test
            db.session.commit()
            continue
        jobs.run_slice(held, "w")
    db.session.refresh(job)
    assert (job.status, job.done, job.error) == ("done", 8, None)


@pytest.mark.parametrize(
    "kind, params",
    [
        ("events.populate", {"types": [], "limit": 5}),
        ("events.retry_all", {"limit": 5, "days": 30}),
        ("imports.subscriptions", {}),
        ("imports.customers", {}),
        ("subscriptions.compare", {}),
        ("customers.update_metadata", {}),
        ("customers.update_contact_ids", {}),
        ("intents.import", {"since": None}),
        ("intents.cancel", {"intent_ids": ["pi_1"]}),
        (
            "reconcile.fix_all",
            {
                "since": "2026-11-01T00:00:00",
                "until": "2026-11-08T00:00:00",
                "object": [],
                "problem": [],
                "cancel_local": False,
            },
        ),
    ],
)
def test_a_job_that_needs_a_processor_and_has_none_fails_saying_so(app, kind, params):
    job = jobs.start(kind, params).job
    assert queues.run_jobs("w") == 1
    db.session.refresh(job)
    assert job.status == "failed" and job.error.endswith("the job's payment processor no longer exists")
