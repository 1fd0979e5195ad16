"""The event pipeline: process ONE stored Stripe event into business records.

What the worker runtime (``admin.worker``) runs for each event it claims, and what a staff replay
(``services/events/ops.replay``) runs for the one event it asked for:

* take: the event is ``processing``, held by one worker name with a lease (the runtime's queue claims
  due events in a batch; a replay takes its one row with :func:`take`).
* lock: on PostgreSQL, transaction-scoped advisory locks on every Stripe object the event touches
  (invoice, charge, intent, subscription, ...) keep events about the same object from running at the
  same time. SQLite runs one writer at a time anyway.
* read: the claim's UPDATE .. RETURNING hands over the columns processing uses (a replay reads its row);
  the run's end is written only while the row is still this worker's (see :func:`process`).
* dispatch and apply: one transaction holds the business records its handler writes and the event's
  new status, so an event is applied entirely or not at all; a worker killed mid-event leaves the row
  to be claimed again when its lease ends. Types with no handler are ``ignored`` with the reason (those of a
  claimed batch together: :func:`ignore_unhandled`).
* fail: transient failures (Stripe 429/5xx/network after the gateway's own retries, database busy, a
  unique-key race with a concurrent event) are retried with the queues' backoff
  (``failures.retry_delay``) up to ``WORKER_MAX_ATTEMPTS``, then left in ``error``; permanent ones go
  to ``error`` at once. When the database itself is away the failure is not the event's: it is raised
  for the runtime to hand the batch back.

This module never imports the runtime: services call it, the runtime calls it.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
from collections.abc import Callable, Sequence
from datetime import datetime, timedelta
from typing import Any, NamedTuple

from flask import current_app
from sqlalchemy import bindparam, insert, literal, select, update
from sqlalchemy.exc import DBAPIError, IntegrityError

from admin.dbutil import immediate, is_postgres, lock_objects, rollback_quietly, rowcount
from admin.extensions import db
from admin.failures import database_unavailable, describe, is_transient, retry_delay
from admin.models import EV_ERROR, EV_IGNORED, EV_PROCESSING, EV_QUEUED, EV_SUCCESS, StripeEvent
from admin.models.jobs import EventAttempt
from admin.services.core import outbox
from admin.services.monitoring import logs as monitoring_logs
from admin.services.monitoring import metrics
from admin.services.settings.processors import processor_ref
from admin.stripe_gateway import GatewayError
from admin.timeutil import utcnow
from admin.webhooks.context import EventContext, EventRow
from admin.webhooks.registry import handler_for

log = logging.getLogger(__name__)

# The Stripe objects an event touches: its locks while it runs.
KEY_COLUMNS = (
    StripeEvent.invoice_id,
    StripeEvent.subscription_id,
    StripeEvent.payment_intent_id,
    StripeEvent.charge_id,
    StripeEvent.object_id,
)

OnDone = Callable[[EventRow, str | None], None]


def worker_name() -> str:
    """Who holds a lease: host, process and thread."""
    return f"{socket.gethostname()}:{os.getpid()}:{threading.get_ident()}"[:64]


class Claimed(NamedTuple):
    id: int
    keys: list[str]  # the Stripe objects the event touches: its locks
    row: EventRow | None = None  # the row as the queue's claim left it (None: a replay's take; read then)


# What the queue's claim returns of each row: what processing reads of it, then the objects it touches.
CLAIM_COLUMNS = (*(getattr(StripeEvent, name) for name in EventRow.__slots__), *KEY_COLUMNS)


def claimed(row_id: int, *keys: str | None) -> Claimed:
    return Claimed(row_id, sorted({k for k in keys if k}))


def claimed_row(values: Sequence[Any]) -> Claimed:
    """A row the queue claimed, from the :data:`CLAIM_COLUMNS` its claim returned."""
    n = len(EventRow.__slots__)
    row = EventRow(*values[:n])
    return claimed(row.id, *values[n:])._replace(row=row)


def take(row: StripeEvent, worker: str, *, lease: timedelta, **changes) -> Claimed:
    """Hold ``row`` (already read for update in this transaction) as ``worker`` for ``lease``: processing,
    one more attempt, ``changes`` applied (a replay's ``refetch``/``no_receipt``). Commits."""
    for name, value in changes.items():
        setattr(row, name, value)
    row.status, row.locked_by = EV_PROCESSING, worker
    row.attempts = (row.attempts or 0) + 1
    row.locked_until = utcnow() + lease
    one = claimed(row.id, *(getattr(row, col.key) for col in KEY_COLUMNS))
    db.session.commit()
    return one


# What processing reads of the event row (one statement, only these columns) and how it writes the row's
# outcome and its attempt: Core statements built once, so an event costs no ORM flush of its own.
_EVENT = StripeEvent.__table__
_READ = select(*(_EVENT.c[name] for name in EventRow.__slots__)).where(_EVENT.c.id == bindparam("row_id"))
# the columns set are the keys of the parameters given (status, status_reason, last_error, ...); only while
# the row is still held by this worker (not taken by another after its lease ran out)
_WRITE = update(_EVENT).where(
    _EVENT.c.id == bindparam("row_id"),
    _EVENT.c.status == EV_PROCESSING,
    _EVENT.c.locked_by == bindparam("holder"),
)
_ATTEMPT = insert(EventAttempt.__table__)
NO_HANDLER = "paydesk has no handler for "  # + the type: an ignored event's reason
# Claimed events of a type with no handler, ignored together (:func:`ignore_unhandled`).
_IGNORE = (
    update(_EVENT)
    .where(
        _EVENT.c.id.in_(bindparam("ids", expanding=True)),
        _EVENT.c.status == EV_PROCESSING,
        _EVENT.c.locked_by == bindparam("worker"),
    )
    .values(
        status=EV_IGNORED,
        status_reason=literal(NO_HANDLER) + _EVENT.c.type,
        last_error=None,
        processed_at=bindparam("now"),
        locked_by=None,
        locked_until=None,
    )
    .returning(*(_EVENT.c[name] for name in ("id", "event_id", "type", "processor_id", "attempts")))
)


def _read(row_id: int) -> EventRow | None:
    found = db.session.connection().execute(_READ, {"row_id": row_id}).first()
    return None if found is None else EventRow(*found)


def process(
    claimed: Claimed, worker: str, *, actor: str | None = None, on_done: OnDone | None = None
) -> str | None:
    """Run the handler for one claimed event; returns its new status (None if it was not ours).

    Each run is recorded as an ``EventAttempt`` (with ``actor`` when staff asked for it) in
    the transaction that sets the event's status; ``on_done(row, error)`` runs in that same
    transaction too (a replay writes its audit entry there). Raises only when the database is away
    (the runtime hands the event back to the queue then)."""
    cfg = current_app.config
    row_id = claimed.id
    started = utcnow()
    ctx = None
    try:
        immediate()
        lock_objects(claimed.keys)  # first, so the row read next is the state after any other holder
        # The claim's copy is the row as it is: only the holder changes a held row (another worker may take
        # it once its lease has run out, which the write at the end sees: all is rolled back then).
        row = claimed.row if claimed.row is not None else _read(row_id)
        if row is None or row.status != EV_PROCESSING or row.locked_by != worker:
            db.session.rollback()
            return None
        processor = processor_ref(row.processor_id)
        if processor is None:
            raise LookupError(f"payment processor {row.processor_id} no longer exists")
        if row.attempts > cfg["WORKER_MAX_ATTEMPTS"] and actor is None:  # staff replays always run
            row.status, row.status_reason = EV_ERROR, None
            row.last_error = (
                row.last_error or f"gave up after {row.attempts - 1} attempts (worker stopped mid-event)"
            )
        else:
            handler = handler_for(row.type)
            if handler is None:
                row.status, row.status_reason = EV_IGNORED, NO_HANDLER + row.type
            else:
                # the cached ProcessorRef stands in for the row (the fields handlers read, no session)
                ctx = EventContext(row, processor)  # type: ignore[arg-type]
                with outbox.caused_by(row.id):
                    handler(ctx)
                row.status = ctx.outcome
                row.status_reason = "; ".join(ctx.notes)[:2000] or None
            row.last_error = None
        status = row.status
        if not _finish(
            row,
            worker,
            actor,
            started,
            status,
            row.status_reason,
            ctx.reader.request_ids if ctx is not None else [],
            processed=True,
        ):
            db.session.rollback()
            return None
        if on_done:
            on_done(row, None)
        db.session.commit()
        return status
    except Exception as exc:  # noqa: BLE001 - every failure is recorded on the event, never swallowed
        rollback_quietly()
        if database_unavailable(exc):
            raise  # not the event's fault: the runtime hands it back, with the rest of the batch
        return record_failure(
            row_id,
            worker,
            exc,
            actor=actor,
            started=started,
            on_done=on_done,
            request_ids=ctx.reader.request_ids if ctx is not None else [],
        )


def ignore_unhandled(claims: Sequence[Claimed], worker: str) -> set[int]:
    """Ignore, in one transaction, the claimed events of a type paydesk has no handler for: each ends as
    :func:`process` would leave it (``ignored`` with the same reason, its ``EventAttempt``, metrics and log
    line), with one UPDATE and one multi-row INSERT for them all. Events :func:`process` must see (out of
    attempts, processor gone) are left to it. Returns the ids done; on an error other than the database
    being away, none (each then goes through :func:`process`)."""
    max_attempts = current_app.config["WORKER_MAX_ATTEMPTS"]
    ids = [
        c.id
        for c in claims
        if c.row is not None
        and c.row.attempts <= max_attempts
        and handler_for(c.row.type) is None
        and processor_ref(c.row.processor_id) is not None
    ]
    if not ids:
        return set()
    started = utcnow()
    try:
        immediate()
        conn = db.session.connection()
        rows = conn.execute(_IGNORE, {"ids": ids, "worker": worker, "now": started}).all()
        finished = utcnow()
        seconds = max(0.0, (finished - started).total_seconds()) / max(1, len(rows))
        attempts = []
        for r in rows:
            reason = NO_HANDLER + r.type
            _record_attempt(r, worker, None, EV_IGNORED, reason, [], seconds)
            attempts.append(_attempt_values(r.id, worker, None, started, finished, EV_IGNORED, reason, ""))
        if attempts:
            conn.execute(_ATTEMPT, attempts)
        db.session.commit()
    except Exception as exc:
        rollback_quietly()
        if database_unavailable(exc):
            raise
        log.warning("ignoring %d events together failed, one by one instead: %s", len(ids), describe(exc))
        return set()
    return set(ids)


def _finish(
    row: EventRow,
    worker: str,
    actor: str | None,
    started: datetime,
    outcome: str,
    message: str | None,
    request_ids: list[str],
    *,
    processed: bool = False,
    next_attempt_at: datetime | None = None,
) -> bool:
    """Write the run's end: the event row released with its status (``processed_at`` set when ``processed``,
    ``next_attempt_at`` when it is queued again) and its ``EventAttempt``; count it and log it. False (nothing
    written) when the row is no longer held by ``worker``."""
    finished = utcnow()
    values = {
        "row_id": row.id,
        "holder": worker,
        "status": row.status,
        "status_reason": row.status_reason,
        "last_error": row.last_error,
        "locked_by": None,
        "locked_until": None,
    }
    if processed:
        values["processed_at"] = finished
    if next_attempt_at is not None:
        values["next_attempt_at"] = next_attempt_at
    conn = db.session.connection()
    ids = ",".join(dict.fromkeys(request_ids))
    attempt = _attempt_values(row.id, worker, actor, started, finished, outcome, message, ids)
    if is_postgres():  # one round trip: the attempt is inserted only if the row was ours
        attempt.pop("event_row_id")  # the UPDATE's row
        stmt = _write_with_attempt(tuple(k for k in values if k not in ("row_id", "holder")), tuple(attempt))
        if conn.execute(stmt, {**values, **{_A + k: v for k, v in attempt.items()}}).first() is None:
            return False
    else:
        if not rowcount(conn.execute(_WRITE, values)):
            return False
        conn.execute(_ATTEMPT, attempt)
    seconds = max(0.0, (finished - started).total_seconds())
    _record_attempt(row, worker, actor, outcome, message, request_ids, seconds)
    return True


_A = "attempt_"  # the attempt's parameters in :func:`_write_with_attempt`'s statement
_WRITES_WITH_ATTEMPT: dict[tuple[str, ...], Any] = {}


def _write_with_attempt(columns: tuple[str, ...], names: tuple[str, ...]) -> Any:
    """PostgreSQL: :data:`_WRITE` setting ``columns`` and the run's ``EventAttempt`` (``names``: its columns
    but the event's id, each given as ``attempt_<name>``) as one statement: the UPDATE in a WITH, the INSERT
    taking its row (none when the row is no longer held), returning the attempt's id. Built once per set of
    columns."""
    stmt = _WRITES_WITH_ATTEMPT.get(columns)
    if stmt is None:
        done = (
            _WRITE.values({c: bindparam(c, type_=_EVENT.c[c].type) for c in columns})
            .returning(_EVENT.c.id)
            .cte("done")
        )
        table = EventAttempt.__table__
        stmt = (
            insert(table)
            .from_select(
                ["event_row_id", *names],
                select(done.c.id, *(bindparam(_A + n, type_=table.c[n].type) for n in names)),
            )
            .returning(table.c.id)
        )  # rowcount is -1 here (psycopg): a row back says it was written
        _WRITES_WITH_ATTEMPT[columns] = stmt
    return stmt


def _record_attempt(
    row: Any,
    worker: str,
    actor: str | None,
    outcome: str,
    message: str | None,
    request_ids: list[str],
    seconds: float,
) -> None:
    """An attempt's metrics and its log line (``row``: an :class:`EventRow` or a row with its columns)."""
    metrics.event_processed(row.type, outcome, seconds)
    monitoring_logs.event_processed(
        row_id=row.id,
        event_id=row.event_id,
        event_type=row.type,
        processor_id=row.processor_id,
        status=outcome,
        attempt=row.attempts,
        seconds=seconds,
        request_ids=request_ids,
        worker=worker,
        actor=actor,
        error=message if outcome not in (EV_SUCCESS, EV_IGNORED) else None,
    )


def _attempt_values(
    row_id: int,
    worker: str,
    actor: str | None,
    started: datetime,
    finished: datetime,
    outcome: str,
    message: str | None,
    request_ids: str,
) -> dict[str, Any]:
    """An ``event_attempt`` row (``request_ids``: the Stripe request ids, comma-separated)."""
    return {
        "event_row_id": row_id,
        "started_at": started,
        "finished_at": finished,
        "worker": worker[:64],
        "actor": actor,
        "outcome": outcome,
        "message": (message or None) and message[:4000],
        "stripe_request_ids": request_ids[:500] or None,
    }


def record_failure(
    row_id: int,
    worker: str,
    exc: Exception,
    *,
    actor: str | None = None,
    started: datetime | None = None,
    on_done: OnDone | None = None,
    request_ids: list[str] | None = None,
) -> str:
    """Record a failed run on the event: queued again after the backoff when the failure passes and attempts
    remain, else ``error``. Commits."""
    cfg = current_app.config
    transient = is_transient(exc)
    message = describe(exc)
    immediate()
    row = _read(row_id)
    if row is None or row.locked_by != worker:
        db.session.rollback()
        return EV_ERROR
    row.last_error = message[:4000]
    retry_at = None
    if transient and row.attempts < cfg["WORKER_MAX_ATTEMPTS"]:
        row.status = EV_QUEUED
        retry_at = utcnow() + retry_delay(row.attempts, conflict=isinstance(exc, IntegrityError))
        log.warning("event %s (%s) failed, retry %d: %s", row.event_id, row.type, row.attempts, message)
    else:
        row.status = EV_ERROR
        if transient:
            row.last_error = f"gave up after {row.attempts} attempts: {message}"[:4000]
        log.error(
            "event %s (%s) failed: %s",
            row.event_id,
            row.type,
            message,
            exc_info=not isinstance(exc, GatewayError | DBAPIError),
        )
    status = row.status
    rids = list(request_ids or []) + (
        [exc.request_id] if isinstance(exc, GatewayError) and exc.request_id else []
    )
    if not _finish(
        row,
        worker,
        actor,
        started or utcnow(),
        "retry" if status == EV_QUEUED else EV_ERROR,
        message,
        rids,
        processed=status == EV_ERROR,
        next_attempt_at=retry_at,
    ):
        db.session.rollback()
        return EV_ERROR
    if on_done:
        on_done(row, message)
    db.session.commit()
    return status
