"""The three queues the worker runs (Stripe events, outbox tasks, jobs) and their ONE policy.

Every queue is a table of rows that are due (queued and their next try has come, or held by a worker
whose lease has run out) and the same three moves over it:

* claim: up to N due rows, oldest first, are marked held by this worker with a lease
  (``WORKER_LEASE_SECONDS``) in one short transaction (PostgreSQL: ``FOR UPDATE SKIP LOCKED``, so
  workers never wait for each other; SQLite: ``BEGIN IMMEDIATE``). A queue with attempts counts one
  more; the attempt number is then the claim's token (the outbox has no holder name).
* run: each claimed row is handed to its runner (``webhooks.pipeline.process``, ``outbox.run_one``,
  ``jobs.run_slice``), which records the row's outcome itself; a failure that passes is tried again
  after ``failures.retry_delay`` (the one backoff), up to ``WORKER_MAX_ATTEMPTS``.
* hand back: when the database goes away in the middle of a batch (not even the runner could record
  its failure), the row being run and the rest of the batch go back to the queue, due now, as soon as
  the database answers (retried with backoff until their lease ends, when anyone may claim them
  anyway) instead of waiting out the lease. The row being run keeps its attempt and the error; the
  others were not attempted and get theirs back.

This is runtime: services never import it. The CLI runs a job in the foreground with
:func:`run_foreground`.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, NamedTuple

from flask import current_app
from sqlalchemy import ColumnElement, DateTime, and_, bindparam, case, or_, select, update

from admin.dbutil import any_row, immediate, retry_while_unavailable
from admin.errors import ServiceError
from admin.extensions import db
from admin.failures import database_unavailable, describe
from admin.models import EV_PROCESSING, EV_QUEUED, OutboxTask, StripeEvent
from admin.models.jobs import JOB_ACTIVE, JOB_PAUSED, JOB_QUEUED, JOB_RUNNING, Job
from admin.services.core import jobs, outbox
from admin.services.core.outbox import SENDING
from admin.timeutil import utcnow
from admin.webhooks import pipeline

log = logging.getLogger(__name__)


class Held(NamedTuple):
    id: int
    token: int | None  # the attempt number this claim made (queues with attempts), else None
    row: Any  # the claimed row's extra columns


@dataclass(frozen=True)
class Queue:
    """A table the worker claims from, and how: the only thing that differs between queues."""

    noun: str  # "event": in log lines
    model: Any
    due: Callable[[Any], ColumnElement]  # rows that may be claimed now (given the time, or its parameter)
    order: Callable[[], tuple]  # oldest first
    columns: Callable[[], tuple]  # read with each claimed row (its locks, ...)
    hold: Callable[[Any, Any], dict]  # values that mark a row held by a worker (besides the lease)
    held_by: Callable[[str, Sequence[Held]], ColumnElement]  # these claims are still ours
    back: Callable[[], dict]  # values that put a row back in the queue, due now
    attempts: bool = True  # a claim counts an attempt (handed back unattempted: given back)
    error_field: str | None = "last_error"  # where the row being run keeps the error that stopped it


def _lease() -> timedelta:
    return timedelta(seconds=current_app.config["WORKER_LEASE_SECONDS"])


def claim(queue: Queue, worker: str, limit: int, *, due: ColumnElement | None = None) -> list[Held]:
    """Hold up to ``limit`` due rows of ``queue`` for ``worker`` (``due``: another condition, e.g. one job by
    id). Commits."""
    now = utcnow()
    probe, take = _claim_statements(queue, limit) if due is None else _claim_build(queue, limit, due)
    params = {"now": now, "worker": worker, "until": now + _lease()}
    if not any_row(probe, params):
        return []
    immediate()
    rows = list(db.session.connection().execute(take, params))
    db.session.commit()
    keep = len(rows[0]) - len(queue.order()) if rows else 0
    rows.sort(key=lambda r: tuple(r[keep:]))  # RETURNING follows no order: oldest first, as selected
    first = 2 if queue.attempts else 1
    return [Held(r[0], r[1] if queue.attempts else None, tuple(r[first:keep])) for r in rows]


_CLAIMS: dict[tuple[str, int], tuple[Any, Any]] = {}


def _claim_statements(queue: Queue, limit: int) -> tuple[Any, Any]:
    """A queue's claim statements, built once (its rows' due time, holder and lease are parameters)."""
    key = (queue.noun, limit)
    found = _CLAIMS.get(key)
    if found is None:
        found = _CLAIMS[key] = _claim_build(queue, limit)
    return found


def _claim_build(queue: Queue, limit: int, due: ColumnElement | None = None) -> tuple[Any, Any]:
    """Two statements: a plain read of whether any row is due (an idle worker takes no write lock), and one
    UPDATE that holds up to ``limit`` due rows, oldest first (PostgreSQL: ``FOR UPDATE SKIP LOCKED``, so
    workers never wait for each other), and returns them: id, attempt made, the queue's columns, its order."""
    model = queue.model
    now = bindparam("now", type_=DateTime)
    due = queue.due(now) if due is None else due
    probe = select(model.id).where(due).limit(1)
    pick = (
        select(model.id)
        .where(due)
        .order_by(*queue.order())
        .limit(limit)
        .with_for_update(skip_locked=True)
        .correlate(None)
    )
    values = {**queue.hold(bindparam("worker"), now), "locked_until": bindparam("until", type_=DateTime)}
    extra = []
    if queue.attempts:
        values["attempts"] = model.attempts + 1
        extra = [model.attempts]  # the new value: the attempt this claim made
    take = (
        update(model.__table__)
        .where(model.id.in_(pick))
        .values(**values)
        .returning(model.id, *extra, *queue.columns(), *queue.order())
    )
    return probe, take


@dataclass(frozen=True)
class Ran:  # not a NamedTuple: its field ``count`` would shadow tuple.count
    count: int  # rows run (or handed back)
    handed_back: bool  # the database went away mid-batch


def run_due(
    queue: Queue,
    worker: str,
    limit: int,
    run_one: Callable[[Held], Any],
    run_together: Callable[[list[Held]], set[int]] | None = None,
) -> Ran:
    """Claim a batch of ``queue`` and run each row; hands the rest back when the database goes away.
    ``run_together``: runs what it can of the batch at once first, and returns the ids it ran."""
    held = claim(queue, worker, limit)
    claimed_at = time.monotonic()
    until = claimed_at + current_app.config["WORKER_LEASE_SECONDS"]
    rest = held
    if run_together is not None and held:
        together_lost: Exception | None = None
        try:
            done = run_together(held)
            rest = [h for h in held if h.id not in done] if done else held
        except Exception as exc:
            if not database_unavailable(exc):
                raise
            together_lost = exc
        if together_lost is not None:
            hand_back(queue, worker, held, together_lost, until=until)
            return Ran(len(held), True)
    for i, one in enumerate(rest):
        try:
            run_one(one)
            continue
        except Exception as exc:
            if not database_unavailable(exc):
                raise
            lost = exc
        # Outside the except block, so a failure here does not log the first one's traceback again.
        hand_back(queue, worker, rest[i:], lost, until=until)
        return Ran(len(held), True)
    return Ran(len(held), False)


def hand_back(
    queue: Queue, worker: str, held: Sequence[Held], exc: Exception, *, until: float | None = None
) -> None:
    """Put claimed rows back in the queue, due now, as soon as the database answers (retried with backoff until
    ``until``, the end of their lease). The first was being run when the database went away: it keeps its
    attempt and the error; the others were not attempted and get theirs back."""
    model = queue.model
    first, rest = held[0], list(held[1:])
    message = describe(exc)[:4000]

    def hand_back_now() -> None:
        back = queue.back()
        immediate()
        first_back = {**back, queue.error_field: message} if queue.error_field else back
        db.session.execute(
            update(model)
            .where(model.id == first.id, queue.held_by(worker, [first]))
            .values(**first_back)
            .execution_options(synchronize_session=False)
        )
        if rest:
            again = {**back, "attempts": model.attempts - 1} if queue.attempts else back
            db.session.execute(
                update(model)
                .where(model.id.in_([h.id for h in rest]), queue.held_by(worker, rest))
                .values(**again)
                .execution_options(synchronize_session=False)
            )
        db.session.commit()

    what = f"{len(held)} claimed {queue.noun}(s)"
    retry_while_unavailable(hand_back_now, what=f"handing {what} back to the queue", until=until)
    log.warning("database unavailable mid-batch: %s handed back to the queue", what)


# -- the three queues ----------------------------------------------------------------------------------

EVENTS = Queue(
    noun="event",
    model=StripeEvent,
    due=lambda now: or_(
        and_(StripeEvent.status == EV_QUEUED, StripeEvent.next_attempt_at <= now),
        and_(StripeEvent.status == EV_PROCESSING, StripeEvent.locked_until < now),
    ),
    order=lambda: (StripeEvent.created, StripeEvent.id),  # oldest Stripe event first
    columns=lambda: pipeline.CLAIM_COLUMNS,
    hold=lambda worker, now: {"status": EV_PROCESSING, "locked_by": worker},
    held_by=lambda worker, held: and_(StripeEvent.locked_by == worker, StripeEvent.status == EV_PROCESSING),
    back=lambda: {"status": EV_QUEUED, "locked_by": None, "locked_until": None, "next_attempt_at": utcnow()},
)

# A task already ``sending`` (a once-only side effect started) keeps that status when claimed again, and is
# never handed back: it stays with its holder until its long lease runs out.
OUTBOX = Queue(
    noun="outbox task",
    model=OutboxTask,
    due=lambda now: or_(
        and_(OutboxTask.status == EV_QUEUED, OutboxTask.next_attempt_at <= now),
        and_(OutboxTask.status.in_([EV_PROCESSING, SENDING]), OutboxTask.locked_until < now),
    ),
    order=lambda: (OutboxTask.id,),
    columns=lambda: outbox.TASK_COLUMNS,  # what running it reads: no second read of the row
    hold=lambda worker, now: {"status": case((OutboxTask.status == SENDING, SENDING), else_=EV_PROCESSING)},
    held_by=lambda worker, held: and_(
        or_(*(and_(OutboxTask.id == h.id, OutboxTask.attempts == h.token) for h in held)),
        OutboxTask.status == EV_PROCESSING,
    ),
    back=lambda: {"status": EV_QUEUED, "locked_until": None, "next_attempt_at": utcnow()},
)


def _job_free(now: datetime) -> ColumnElement:
    return or_(Job.locked_until.is_(None), Job.locked_until < now)  # a passing failure sets "not before"


# A job runs a slice at a time; between slices it stays ``running`` with no lease and any worker continues it.
JOBS = Queue(
    noun="job",
    model=Job,
    due=lambda now: and_(Job.status.in_((JOB_QUEUED, JOB_RUNNING)), _job_free(now)),
    order=lambda: (Job.id,),
    columns=lambda: (),
    hold=lambda worker, now: {"status": JOB_RUNNING, "locked_by": worker},
    held_by=lambda worker, held: Job.locked_by == worker,
    back=lambda: {"locked_by": None, "locked_until": None},
    attempts=False,
    error_field=None,
)


# -- what the loop and the CLI call ---------------------------------------------------------------------


def claim_events(worker: str, limit: int) -> list[pipeline.Claimed]:
    return [_claimed(h) for h in claim(EVENTS, worker, limit)]


def _claimed(h: Held) -> pipeline.Claimed:
    return pipeline.claimed_row(h.row)


def run_events(worker: str) -> Ran:
    """One batch of due events through the pipeline: those of a type with no handler ignored together, then
    the others one by one."""
    return run_due(
        EVENTS,
        worker,
        current_app.config["WORKER_BATCH"],
        lambda h: pipeline.process(_claimed(h), worker),
        lambda held: pipeline.ignore_unhandled([_claimed(h) for h in held], worker),
    )


def run_outbox(worker: str, limit: int = 20) -> int:
    """Run up to ``limit`` due outbox tasks; how many were run (or handed back to the queue)."""
    return run_due(OUTBOX, worker, limit, _run_task).count


def _run_task(h: Held) -> None:
    assert h.token is not None, "the outbox queue counts attempts: a claim's token is its attempt"
    outbox.run_one(h.id, h.token, claimed=h.row)


def claim_job(worker: str, job_id: int | None = None) -> Job | None:
    """Take the lease on one due job (or on ``job_id``, also when paused); None when there is none. Commits."""
    due = None
    if job_id is not None:
        due = and_(Job.id == job_id, Job.status.in_(JOB_ACTIVE), _job_free(utcnow()))
    held = claim(JOBS, worker, 1, due=due)
    if not held:
        return None
    job = db.session.get_one(Job, held[0].id, populate_existing=True)
    if job.started_at is None:
        job.started_at = utcnow()
        db.session.commit()
    return job


def run_jobs(worker: str, seconds: float = 2.0) -> int:
    """The worker's share of the jobs: one slice of one due job; 1 when a job ran."""
    job = claim_job(worker)
    if job is None:
        return 0
    jobs.run_slice(job, worker, seconds=seconds)
    return 1


def run_foreground(job: Job, worker: str, on_progress: Callable[[Job], None] | None = None) -> str:
    """Run a job to its end in this process (the CLI). Ctrl-C pauses it, resumable later."""
    held = claim_job(worker, job.id)
    if held is None:
        raise ServiceError(
            f"job {job.id} is being run by {job.locked_by or 'a worker'}; follow it on /jobs "
            f"or wait for it to finish"
        )
    try:
        return jobs.run_slice(held, worker, on_progress=on_progress)
    except KeyboardInterrupt:
        jobs.pause(held)
        return JOB_PAUSED
