"""Side effects that must follow a committed change: receipts, Stripe customer metadata.

A task is written in the same transaction as the change that asks for it and
keyed so that asking twice makes one task. The worker runs due tasks after
the events (``admin.worker.queues``): failures are retried with backoff, then left in
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

import inspect
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
from sqlalchemy import Select, bindparam, func, select, update

from admin.dbutil import (
    immediate,
    insert_ignore,
    parse_id,
    retry_while_unavailable,
    rollback_quietly,
    rowcount,
)
from admin.errors import ServiceError
from admin.extensions import db
from admin.failures import database_unavailable, describe, is_transient, retry_delay
from admin.listing import Filter, Page, capped_counts, keyset_page, walk
from admin.models import EV_ERROR, EV_PROCESSING, EV_QUEUED, EV_SUCCESS, OutboxTask
from admin.services.core import audit
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


@dataclass(frozen=True)
class RetryFor:
    """A kind retried for a length of time (``window()``) with its own backoff, not ``WORKER_MAX_ATTEMPTS``."""

    window: Callable[[], timedelta]
    backoff: Callable[[int], timedelta]


_RETRY_FOR: dict[str, RetryFor] = {}
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


def runner(kind: str, *, retry_for: RetryFor | None = None):
    """Mark a function as the runner of a kind of task (``register_runners`` makes it known: at app creation,
    ``admin.worker.registries``). It does the side effect and returns how to record it in the database (a
    function run inside the commit that marks the task done, again if that commit is retried), or None
    when there is nothing to record. ``retry_for``: a transient failure is retried with that policy's
    backoff until its window (from the task's creation, or from a retry by hand) has passed, then the task
    is left in ``error``."""

    def mark(fn: Callable[[OutboxTask], Record | None]):
        fn.outbox_kind = kind  # type: ignore[attr-defined]
        fn.outbox_retry_for = retry_for  # type: ignore[attr-defined]
        return fn

    return mark


def register_runners(*fns: Callable[[OutboxTask], Record | None]) -> None:
    for fn in fns:
        _RUNNERS[fn.outbox_kind] = fn  # type: ignore[attr-defined]
        policy = getattr(fn, "outbox_retry_for", None)
        if policy is not None:
            _RETRY_FOR[fn.outbox_kind] = policy  # type: ignore[attr-defined]


def runners_in(*modules) -> list[Callable]:
    """The ``@runner`` functions defined in these modules."""
    return [
        fn
        for m in modules
        for fn in vars(m).values()
        if inspect.isfunction(fn) and hasattr(fn, "outbox_kind")
    ]


def enqueue(kind: str, what: str, payload: dict[str, Any], processor_id: int | None = None) -> bool:
    """Ask for a side effect once; True when this call created the task. Does not commit."""
    policy = _RETRY_FOR.get(kind)
    now = utcnow()
    return insert_ignore(
        OutboxTask,
        {
            "kind": kind,
            "key": f"{kind}:{what}",
            "payload": payload,
            "processor_id": processor_id,
            "status": EV_QUEUED,
            "attempts": 0,
            "next_attempt_at": now,
            "created_at": now,
            "retry_until": now + policy.window() if policy else None,
            "event_row_id": _CAUSE.get(),
        },
        ["key"],
    )


# The task-row writes of a run, built once (Core, by id and the claim's attempt): a run reads no row back.
_TASKS = OutboxTask.__table__
_OURS = (_TASKS.c.id == bindparam("task_id"), _TASKS.c.attempts == bindparam("attempt"))
_BEGIN = (
    update(_TASKS)
    .where(*_OURS, _TASKS.c.status.in_([EV_PROCESSING, SENDING]))
    .values(status=SENDING, locked_until=bindparam("lease"))
)
_DONE = (
    update(_TASKS)
    .where(*_OURS)
    .values(status=EV_SUCCESS, done_at=bindparam("now"), last_error=None, locked_until=None)
)


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
    taken = rowcount(
        db.session.connection().execute(_BEGIN, {"task_id": task_id, "attempt": attempt, "lease": lease})
    )
    db.session.commit()
    if not taken:
        raise LeaseLost(f"outbox task {task_id} was claimed again by another worker")


# A task's columns its runner reads, as the claim reads them (``admin.worker.queues``): ``run_one`` need not read
# the row again.
TASK_COLUMNS = (
    OutboxTask.kind,
    OutboxTask.key,
    OutboxTask.payload,
    OutboxTask.processor_id,
    OutboxTask.status,
    OutboxTask.retry_until,
)


def run_one(task_id: int, attempt: int, *, claimed: tuple | None = None) -> None:
    """Run one claimed task (``attempt``: the claim's token, see ``admin.worker.queues``) and record the outcome.
    ``claimed``: the row's ``TASK_COLUMNS`` as the claim read them (else the row is read). Raises only when the
    database is away (the runtime hands the task back then)."""
    if claimed is not None:
        # The claim read it as it is now (the claim's UPDATE changed only the status, lease and attempts): a
        # detached copy for the runner, never added to the session (the outcome is written by id below).
        kind, key, payload, processor_id, status, retry_until = claimed
        task = OutboxTask(
            id=task_id,
            kind=kind,
            key=key,
            payload=payload,
            processor_id=processor_id,
            status=SENDING if status == SENDING else EV_PROCESSING,  # what the claim made it
            retry_until=retry_until,
            attempts=attempt,
        )
    else:
        found = db.session.get(OutboxTask, task_id, populate_existing=True)
        if found is None or found.attempts != attempt:
            db.session.rollback()
            return
        task = found
    kind, key = task.kind, task.key
    if task.status == SENDING:
        log.warning(
            "outbox task %s (%s): a worker started it and stopped before recording the outcome; "
            "running it again (a receipt keeps its Message-ID, so a mail system can drop a repeat)",
            task_id,
            key,
        )
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
            raise  # not the task's fault: the runtime hands it back, with the rest of the batch
        _record_failure(task_id, attempt, exc)
        return

    def done() -> None:
        # One UPDATE, not a read and a write: the row lock it takes keeps a new claimer out until the commit.
        ours = rowcount(
            db.session.connection().execute(_DONE, {"task_id": task_id, "attempt": attempt, "now": utcnow()})
        )
        if not ours:  # claimed again after our lease: theirs to record
            db.session.rollback()
            return
        if record is not None:
            record()
        db.session.commit()

    # The side effect happened: its record must survive a database that is away right now.
    retry_while_unavailable(
        done, what=f"recording outbox task {task_id} ({key}) as done", until=_holding.record_until
    )


def _record_failure(task_id: int, attempt: int, exc: Exception) -> None:
    cfg = current_app.config
    task = db.session.get(OutboxTask, task_id, populate_existing=True)
    if task is None or task.attempts != attempt:
        db.session.rollback()
        return
    task.last_error = describe(exc)[:2000]
    task.locked_until = None
    policy = _RETRY_FOR.get(task.kind)
    wait = policy.backoff(task.attempts) if policy else retry_delay(task.attempts)
    if policy:  # retried for a length of time: given up when the next attempt would fall after it
        give_up = task.retry_until is None or utcnow() + wait > task.retry_until
    else:
        give_up = task.attempts >= cfg["WORKER_MAX_ATTEMPTS"]
    if not is_transient(exc) or give_up:
        task.status = EV_ERROR
        log.error("outbox task %s (%s) failed for good: %s", task.id, task.key, task.last_error)
    else:
        task.status = EV_QUEUED
        task.next_attempt_at = utcnow() + wait
        log.warning("outbox task %s (%s) failed, will retry: %s", task.id, task.key, exc)
    db.session.commit()


# -- staff: the failed side effects, and retrying one ---------------------------------------


def _unknown_kind(kinds: list[str]) -> str | None:
    bad = [k for k in kinds if k not in _RUNNERS]
    return (
        f"{bad[0][:40]!r} is not a kind of side effect: one of {', '.join(sorted(_RUNNERS))}" if bad else None
    )


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
    return {
        "id": t.id,
        "kind": t.kind,
        "key": t.key,
        "status": t.status,
        "attempts": t.attempts,
        "last_error": t.last_error,
        "event_row_id": t.event_row_id,
        "processor_id": t.processor_id,
        "created_at": t.created_at.isoformat(timespec="seconds") if t.created_at else None,
        "done_at": t.done_at.isoformat(timespec="seconds") if t.done_at else None,
    }


def task_rows(flt: TaskFilter) -> Iterator[dict[str, Any]]:
    """Every side effect the filter matches, newest first, as dicts, a keyset chunk at a time."""
    for chunk in walk(task_query(flt), [OutboxTask.id], flt, scalars=True):
        yield from (task_dict(t) for t in chunk)


def count_failed() -> int:
    return int(
        db.session.scalar(select(func.count()).select_from(OutboxTask).where(OutboxTask.status == EV_ERROR))
        or 0
    )


def find(task_id: int | str) -> OutboxTask | None:
    found = parse_id(task_id)
    return db.session.get(OutboxTask, found) if found else None


def retry(task_id: int) -> OutboxTask:
    """Queue a failed task again, with fresh attempts. Commits, with its audit entry."""
    immediate()
    task = find(task_id)
    if task is None:
        raise ServiceError(f"no outbox task {task_id}")
    if task.status != EV_ERROR:
        db.session.rollback()
        raise ServiceError(f"this task is {task.status}, not in error: nothing to retry")
    requeue(task)
    audit.record(
        "outbox.retry",
        object_type="outbox_task",
        object_id=str(task.id),
        processor_id=task.processor_id,
        parameters={"key": task.key},
        message=task.last_error,
        commit=False,
    )
    db.session.commit()
    return task


def requeue(task: OutboxTask) -> None:
    """Queue a task again now, with fresh attempts (and a fresh window for a kind retried for a length of
    time). Does not commit; the caller checks the task may run again and audits it."""
    policy = _RETRY_FOR.get(task.kind)
    now = utcnow()
    task.status, task.attempts, task.next_attempt_at, task.locked_until = EV_QUEUED, 0, now, None
    task.retry_until = now + policy.window() if policy else None
