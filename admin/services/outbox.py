"""Side effects that must follow a committed change: receipts, Stripe customer metadata.

A task is written in the same transaction as the change that asks for it and
keyed so that asking twice makes one task. The worker runs due tasks after
the events (``run_due``): failures are retried with backoff, then left in
``error`` for staff.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from flask import current_app
from sqlalchemy import and_, func, or_, select, update

from ..dbutil import immediate, insert_ignore
from ..extensions import db
from ..failures import describe, is_transient
from ..listing import Filter, Page, keyset_page
from ..models import EV_ERROR, EV_PROCESSING, EV_QUEUED, EV_SUCCESS, OutboxTask
from ..timeutil import utcnow

log = logging.getLogger(__name__)
TASK_STATUSES = (EV_QUEUED, EV_PROCESSING, EV_SUCCESS, EV_ERROR)

_RUNNERS: dict[str, Callable[[OutboxTask], None]] = {}
# The stored event whose handler is running in this thread/context: tasks it asks for name it.
_CAUSE: ContextVar[int | None] = ContextVar("paydesk_outbox_cause", default=None)


@contextmanager
def caused_by(event_row_id: int):
    token = _CAUSE.set(event_row_id)
    try:
        yield
    finally:
        _CAUSE.reset(token)


def runner(kind: str):
    def register(fn: Callable[[OutboxTask], None]):
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
    """Run up to ``limit`` due tasks; returns how many were run."""
    _load_runners()
    cfg = current_app.config
    now = utcnow()
    immediate()
    due = or_(and_(OutboxTask.status == EV_QUEUED, OutboxTask.next_attempt_at <= now),
              and_(OutboxTask.status == EV_PROCESSING, OutboxTask.locked_until < now))
    ids_q = select(OutboxTask.id).where(due).order_by(OutboxTask.id).limit(limit).with_for_update(skip_locked=True)
    ids = list(db.session.scalars(ids_q))
    if ids:
        db.session.execute(update(OutboxTask).where(OutboxTask.id.in_(ids)).values(
            status=EV_PROCESSING, attempts=OutboxTask.attempts + 1,
            locked_until=now + timedelta(seconds=cfg["WORKER_LEASE_SECONDS"])))
    db.session.commit()
    for task_id in ids:
        _run_one(task_id)
    return len(ids)


def _run_one(task_id: int) -> None:
    cfg = current_app.config
    task = db.session.get(OutboxTask, task_id)
    fn = _RUNNERS.get(task.kind)
    try:
        if fn is None:
            raise RuntimeError(f"no runner for outbox task kind {task.kind!r}")
        fn(task)
        task.status, task.done_at, task.last_error = EV_SUCCESS, utcnow(), None
        db.session.commit()
    except Exception as exc:  # recorded on the task and retried when worth it, never swallowed
        db.session.rollback()
        task = db.session.get(OutboxTask, task_id)
        task.last_error = describe(exc)[:2000]
        if not is_transient(exc) or task.attempts >= cfg["WORKER_MAX_ATTEMPTS"]:
            task.status = EV_ERROR
            log.error("outbox task %s (%s) failed for good: %s", task.id, task.key, task.last_error)
        else:
            task.status = EV_QUEUED
            task.next_attempt_at = utcnow() + backoff(task.attempts)
            log.warning("outbox task %s (%s) failed, will retry: %s", task.id, task.key, exc)
        db.session.commit()


def backoff(attempts: int) -> timedelta:
    cfg = current_app.config
    return timedelta(seconds=min(cfg["WORKER_BACKOFF_MAX"], cfg["WORKER_BACKOFF_BASE"] * 2 ** max(0, attempts - 1)))


def _load_runners() -> None:
    from . import customers, receipts  # noqa: F401  (importing registers the runners)


# -- staff: the failed side effects, and retrying one ---------------------------------------


@dataclass
class TaskFilter(Filter):
    status: list[str] = field(default_factory=list, metadata={"choices": TASK_STATUSES})
    kind: list[str] = field(default_factory=list)


def task_page(flt: TaskFilter) -> Page:
    q = select(OutboxTask)
    if flt.status:
        q = q.where(OutboxTask.status.in_(flt.status))
    if flt.kind:
        q = q.where(OutboxTask.kind.in_(flt.kind))
    return keyset_page(q, [OutboxTask.id], flt)


def count_failed() -> int:
    return int(db.session.scalar(select(func.count()).select_from(OutboxTask).where(OutboxTask.status == EV_ERROR))
               or 0)


def find(task_id: int) -> OutboxTask | None:
    return db.session.get(OutboxTask, task_id) if 0 < task_id < 2**63 else None


def retry(task_id: int) -> OutboxTask:
    """Queue a failed task again, with fresh attempts. Commits, with its audit entry."""
    from . import ServiceError, audit

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
