"""Side effects that must follow a committed change: receipts, Stripe customer metadata.

A task is written in the same transaction as the change that asks for it and
keyed so that asking twice makes one task. The worker runs due tasks after
the events (``run_due``): failures are retried with backoff, then left in
``error`` for staff.

A runner returns, after its side effect, how to record it (or None); the
outbox commits that together with the task's ``success``. That commit is
retried while the database is unreachable (``DB_RETRY_SECONDS``), so a mail
that went out is recorded as soon as the database is back. A runner whose
side effect must not be repeated (a receipt) calls ``begin_side_effect``
just before it: the task becomes ``sending`` with a lease that covers the
send and those retries (60 s + ``DB_RETRY_SECONDS``), so it is neither
handed back nor claimed again while its holder may still record it (the
holder stops retrying just before that lease ends). Only a worker that died
between the send and the record (SIGKILL, power loss), or a database away
for longer than ``DB_RETRY_SECONDS`` just after a send, leaves a ``sending``
task whose lease runs out: it is run again then, with a warning (a receipt
keeps its Message-ID, so a mail system can drop the repeat).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from flask import current_app
from sqlalchemy import Select, and_, case, func, or_, select, update

from admin.dbutil import (
    any_row,
    immediate,
    insert_ignore,
    parse_id,
    retry_while_unavailable,
    rollback_quietly,
    rowcount,
)
from admin.extensions import db
from admin.failures import database_unavailable, describe, is_transient
from admin.listing import Filter, Page, capped_counts, keyset_page, walk
from admin.models import EV_ERROR, EV_PROCESSING, EV_QUEUED, EV_SUCCESS, OutboxTask
from admin.timeutil import utcnow

log = logging.getLogger(__name__)

# A once-only side effect (a receipt) has started: the task is never handed back, and claimed again
# only when its (long) lease has run out.
SENDING = "sending"
TASK_STATUSES = (EV_QUEUED, EV_PROCESSING, SENDING, EV_SUCCESS, EV_ERROR)
SIDE_EFFECT_SECONDS = 60  # the longest a side effect itself may take (SMTP's timeout is 30 s)
LEASE_MARGIN_SECONDS = 5
_holding = threading.local()  # record_until: when the running task's holder must stop retrying its record

Record = Callable[[], None]
_RUNNERS: dict[str, Callable[[OutboxTask], Record | None]] = {}
# The stored event whose handler is running in this thread/context: tasks it asks for name it.
_CAUSE: ContextVar[int | None] = ContextVar("paydesk_outbox_cause", default=None)


@contextmanager
def caused_by(event_row_id: int):
    token = _CAUSE.set(event_row_id)
    try:
        yield
    finally:
        _CAUSE.reset(token)


class LeaseLost(Exception):
    """The task was claimed again by another worker (our lease ran out): leave it to them."""


def runner(kind: str):
    """Register the runner of a kind of task. It does the side effect and returns how to record it in the
    database (a function run inside the commit that marks the task done, again if that commit is
    retried), or None when there is nothing to record."""

    def register(fn: Callable[[OutboxTask], Record | None]):
        _RUNNERS[kind] = fn
        return fn

    return register


def enqueue(kind: str, what: str, payload: dict[str, Any], processor_id: int | None = None) -> bool:
    """Ask for a side effect once; True when this call created the task. Does not commit."""
    return insert_ignore(OutboxTask, {"kind": kind, "key": f"{kind}:{what}", "payload": payload,
                                      "processor_id": processor_id, "status": EV_QUEUED, "attempts": 0,
                                      "next_attempt_at": utcnow(), "created_at": utcnow(),
                                      "event_row_id": _CAUSE.get()}, ["key"])


def run_due(worker_id: str, limit: int = 20) -> int:
    """Run up to ``limit`` due tasks; returns how many were run (or handed back to the queue)."""
    _load_runners()
    cfg = current_app.config
    now = utcnow()
    due = or_(and_(OutboxTask.status == EV_QUEUED, OutboxTask.next_attempt_at <= now),
              and_(OutboxTask.status.in_([EV_PROCESSING, SENDING]), OutboxTask.locked_until < now))
    if not any_row(select(OutboxTask.id).where(due)):
        return 0
    immediate()
    rows = db.session.execute(select(OutboxTask.id, OutboxTask.attempts).where(due).order_by(OutboxTask.id)
                              .limit(limit).with_for_update(skip_locked=True)).all()
    # (id, attempts after this claim): the attempt number is the claim's token; whoever claims the task
    # next bumps it, so a worker whose lease ran out can tell the task is no longer its own.
    claimed = [(r[0], r[1] + 1) for r in rows]
    if claimed:
        db.session.execute(update(OutboxTask).where(OutboxTask.id.in_([c[0] for c in claimed])).values(
            status=case((OutboxTask.status == SENDING, SENDING), else_=EV_PROCESSING),
            attempts=OutboxTask.attempts + 1,
            locked_until=now + timedelta(seconds=cfg["WORKER_LEASE_SECONDS"])))
    db.session.commit()
    claimed_at = time.monotonic()
    for i, (task_id, attempt) in enumerate(claimed):
        try:
            _run_one(task_id, attempt)
            continue
        except Exception as exc:
            if not database_unavailable(exc):
                raise
        _release(claimed[i:], until=claimed_at + cfg["WORKER_LEASE_SECONDS"])  # outside the except: see run_batch
        break
    return len(claimed)


def begin_side_effect(task: OutboxTask) -> None:
    """Call just before a side effect that must not be repeated: commits the task as ``sending``, leased
    for the side effect plus the retries that record it. Raises ``LeaseLost`` when another worker has
    claimed the task meanwhile (nothing must be sent then)."""
    cfg = current_app.config
    task_id, attempt = task.id, task.attempts
    hold = SIDE_EFFECT_SECONDS + cfg["DB_RETRY_SECONDS"]
    lease = utcnow() + timedelta(seconds=hold)
    # the holder stops retrying the record a little before this lease ends, so it never races a new claimer
    _holding.record_until = time.monotonic() + hold - LEASE_MARGIN_SECONDS
    immediate()
    taken = rowcount(db.session.execute(
        update(OutboxTask).where(OutboxTask.id == task_id, OutboxTask.attempts == attempt,
                                 OutboxTask.status.in_([EV_PROCESSING, SENDING]))
        .values(status=SENDING, locked_until=lease).execution_options(synchronize_session=False)))
    db.session.commit()
    if not taken:
        raise LeaseLost(f"outbox task {task_id} was claimed again by another worker")


def _run_one(task_id: int, attempt: int) -> None:
    task = db.session.get(OutboxTask, task_id, populate_existing=True)
    if task is None or task.attempts != attempt:
        db.session.rollback()
        return
    kind, key = task.kind, task.key
    if task.status == SENDING:
        log.warning("outbox task %s (%s): a worker started it and stopped before recording the outcome; "
                    "running it again (a receipt keeps its Message-ID, so a mail system can drop a repeat)",
                    task_id, key)
    fn = _RUNNERS.get(kind)
    _holding.record_until = None
    try:
        if fn is None:
            raise RuntimeError(f"no runner for outbox task kind {kind!r}")
        record = fn(task)
    except LeaseLost as lost:
        rollback_quietly()
        log.info("%s", lost)
        return
    except Exception as exc:  # recorded on the task and retried when worth it, never swallowed
        rollback_quietly()
        if database_unavailable(exc):
            raise  # not the task's fault: run_due hands it back, with the rest of the batch
        _record_failure(task_id, attempt, exc)
        return

    def done() -> None:
        t = db.session.get(OutboxTask, task_id, populate_existing=True)
        if t is None or t.attempts != attempt:  # claimed again after our lease: theirs to record
            db.session.rollback()
            return
        if record is not None:
            record()
        t.status, t.done_at, t.last_error, t.locked_until = EV_SUCCESS, utcnow(), None, None
        db.session.commit()

    # The side effect happened: its record must survive a database that is away right now.
    retry_while_unavailable(done, what=f"recording outbox task {task_id} ({key}) as done",
                            until=_holding.record_until)


def _record_failure(task_id: int, attempt: int, exc: Exception) -> None:
    cfg = current_app.config
    task = db.session.get(OutboxTask, task_id, populate_existing=True)
    if task is None or task.attempts != attempt:
        db.session.rollback()
        return
    task.last_error = describe(exc)[:2000]
    task.locked_until = None
    if not is_transient(exc) or task.attempts >= cfg["WORKER_MAX_ATTEMPTS"]:
        task.status = EV_ERROR
        log.error("outbox task %s (%s) failed for good: %s", task.id, task.key, task.last_error)
    else:
        task.status = EV_QUEUED
        task.next_attempt_at = utcnow() + backoff(task.attempts)
        log.warning("outbox task %s (%s) failed, will retry: %s", task.id, task.key, exc)
    db.session.commit()


def _release(claimed: list[tuple[int, int]], *, until: float) -> None:
    """Hand claimed tasks back to the queue, due now, as soon as the database answers (retried with backoff
    until ``until``, the end of their lease). The first was running when the database went away and keeps
    its attempt; the others get theirs back. A task already ``sending`` stays with its holder (or lease)."""
    (first, first_attempt), rest = claimed[0], claimed[1:]

    def hand_back() -> None:
        back = {"status": EV_QUEUED, "locked_until": None, "next_attempt_at": utcnow()}
        immediate()
        db.session.execute(update(OutboxTask).where(
            OutboxTask.id == first, OutboxTask.attempts == first_attempt, OutboxTask.status == EV_PROCESSING)
            .values(**back).execution_options(synchronize_session=False))
        if rest:
            mine = or_(*(and_(OutboxTask.id == i, OutboxTask.attempts == a) for i, a in rest))
            db.session.execute(update(OutboxTask).where(mine, OutboxTask.status == EV_PROCESSING)
                               .values(attempts=OutboxTask.attempts - 1, **back)
                               .execution_options(synchronize_session=False))
        db.session.commit()

    retry_while_unavailable(hand_back, what=f"handing {len(claimed)} claimed outbox task(s) back to the queue",
                            until=until)


def backoff(attempts: int) -> timedelta:
    cfg = current_app.config
    return timedelta(seconds=min(cfg["WORKER_BACKOFF_MAX"], cfg["WORKER_BACKOFF_BASE"] * 2 ** max(0, attempts - 1)))


def _load_runners() -> None:
    from admin.services.donations import receipts  # noqa: F401  (importing registers the runners)
    from admin.services.records import customers  # noqa: F401  (importing registers the runners)


# -- staff: the failed side effects, and retrying one ---------------------------------------


def _unknown_kind(kinds: list[str]) -> str | None:
    _load_runners()
    bad = [k for k in kinds if k not in _RUNNERS]
    return f"{bad[0][:40]!r} is not a kind of side effect: one of {', '.join(sorted(_RUNNERS))}" if bad else None


@dataclass
class TaskFilter(Filter):
    status: list[str] = field(default_factory=list, metadata={"choices": TASK_STATUSES})
    kind: list[str] = field(default_factory=list, metadata={"known": _unknown_kind})


def task_query(flt: TaskFilter, *, with_status: bool = True) -> Select:
    """The side effects matching ``flt`` (no order, no paging): the page, its counts and its CSV."""
    q = select(OutboxTask)
    if with_status and flt.status:
        q = q.where(OutboxTask.status.in_(flt.status))
    if flt.kind:
        q = q.where(OutboxTask.kind.in_(flt.kind))
    return q


def task_page(flt: TaskFilter) -> Page:
    return keyset_page(task_query(flt), [OutboxTask.id], flt)


def task_status_counts(flt: TaskFilter) -> dict[str, int]:
    """How many side effects of each status match the rest of the filter (capped like every list's)."""
    return capped_counts(task_query(flt, with_status=False), OutboxTask.status, OutboxTask.id, TASK_STATUSES)


def task_dict(t: OutboxTask) -> dict[str, Any]:
    return {"id": t.id, "kind": t.kind, "key": t.key, "status": t.status, "attempts": t.attempts,
            "last_error": t.last_error, "event_row_id": t.event_row_id, "processor_id": t.processor_id,
            "created_at": t.created_at.isoformat(timespec="seconds") if t.created_at else None,
            "done_at": t.done_at.isoformat(timespec="seconds") if t.done_at else None}


def task_rows(flt: TaskFilter) -> Iterator[dict[str, Any]]:
    """Every side effect the filter matches, newest first, as dicts, a keyset chunk at a time."""
    for chunk in walk(task_query(flt), [OutboxTask.id], flt, scalars=True):
        yield from (task_dict(t) for t in chunk)


def count_failed() -> int:
    return int(db.session.scalar(select(func.count()).select_from(OutboxTask).where(OutboxTask.status == EV_ERROR))
               or 0)


def find(task_id: int | str) -> OutboxTask | None:
    found = parse_id(task_id)
    return db.session.get(OutboxTask, found) if found else None


def retry(task_id: int) -> OutboxTask:
    """Queue a failed task again, with fresh attempts. Commits, with its audit entry."""
    from admin.errors import ServiceError
    from admin.services.core import audit

    immediate()
    task = find(task_id)
    if task is None:
        raise ServiceError(f"no outbox task {task_id}")
    if task.status != EV_ERROR:
        db.session.rollback()
        raise ServiceError(f"this task is {task.status}, not in error: nothing to retry")
    task.status, task.attempts, task.next_attempt_at, task.locked_until = EV_QUEUED, 0, utcnow(), None
    audit.record("outbox.retry", object_type="outbox_task", object_id=str(task.id), processor_id=task.processor_id,
                 parameters={"key": task.key}, message=task.last_error, commit=False)
    db.session.commit()
    return task
