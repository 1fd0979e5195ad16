"""Is paydesk ready, and is its queue healthy? ``/readyz``, the metrics read from the database, the dashboard.

- :func:`queue_snapshot`: the event queue by status, how long the oldest due event has waited for a worker,
  the outbox backlog, jobs by kind and status, the freshest worker heartbeat. A handful of indexed queries.
- :func:`readiness`: database reachable, schema at the newest migration, oldest due event younger than
  ``READY_QUEUE_MAX_AGE`` seconds, a worker heartbeat within ``READY_HEARTBEAT_MAX_AGE`` seconds (0 turns
  either check off); each check says what it found.
- :func:`beat` / :func:`stop_beating` / :func:`prune_heartbeats`: the worker's heartbeat rows.
"""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from flask import current_app
from sqlalchemy import delete, func, select, text, update

from admin.dbutil import immediate, insert_ignore, rowcount
from admin.extensions import db
from admin.models import (
    EV_ERROR,
    EV_PROCESSING,
    EV_QUEUED,
    EV_SUCCESS,
    Job,
    OutboxTask,
    StripeEvent,
    WorkerHeartbeat,
)
from admin.services.monitoring.dashboard import counts_per, periods
from admin.timeutil import to_unix, utcnow

QUEUE_STATUSES = (EV_QUEUED, EV_PROCESSING, EV_ERROR)
PROCESSED_WINDOW = timedelta(hours=2)
ERRORS_READ_MAX = 100_000  # the errors chart reads at most this many rows (a flood is a flood either way)


@dataclass
class QueueSnapshot:
    now: datetime
    events_by_status: dict[str, int] = field(default_factory=dict)
    oldest_queued_seconds: float | None = None  # the oldest due event's wait for a worker; None: none due
    outbox: dict[tuple[str, str], int] = field(default_factory=dict)
    jobs: dict[tuple[str, str], int] = field(default_factory=dict)
    heartbeat_seconds: float | None = None  # since the freshest worker heartbeat; None: none at all
    workers_alive: int = 0


def oldest_queued_seconds(now: datetime | None = None) -> float | None:
    """How long the event that has waited longest for a worker has been due (received, or its retry due);
    None when nothing is due. One read of the queue index's first entry."""
    now = now or utcnow()
    due = db.session.scalar(
        select(func.min(StripeEvent.next_attempt_at)).where(
            StripeEvent.status == EV_QUEUED, StripeEvent.next_attempt_at <= now
        )
    )
    return None if due is None else max(0.0, (now - due).total_seconds())


def heartbeat_age(now: datetime | None = None) -> tuple[float | None, int]:
    """(seconds since the freshest heartbeat or None, how many workers beat within READY_HEARTBEAT_MAX_AGE)."""
    now = now or utcnow()
    limit = float(current_app.config["READY_HEARTBEAT_MAX_AGE"]) or 3 * float(
        current_app.config["WORKER_HEARTBEAT_SECONDS"]
    )
    latest, alive = db.session.execute(
        select(
            func.max(WorkerHeartbeat.beat_at),
            func.count().filter(WorkerHeartbeat.beat_at >= now - timedelta(seconds=limit)),
        )
    ).one()
    return (None if latest is None else max(0.0, (now - latest).total_seconds())), int(alive or 0)


def queue_snapshot(now: datetime | None = None) -> QueueSnapshot:
    now = now or utcnow()
    snap = QueueSnapshot(now=now)
    snap.events_by_status = {s: 0 for s in QUEUE_STATUSES}
    snap.events_by_status.update(
        db.session.execute(
            select(StripeEvent.status, func.count())
            .where(StripeEvent.status.in_(QUEUE_STATUSES))
            .group_by(StripeEvent.status)
        ).all()
    )
    snap.oldest_queued_seconds = oldest_queued_seconds(now)
    snap.outbox = {
        (k, s): n
        for k, s, n in db.session.execute(
            select(OutboxTask.kind, OutboxTask.status, func.count())
            .where(OutboxTask.status != EV_SUCCESS)
            .group_by(OutboxTask.kind, OutboxTask.status)
        )
    }
    snap.jobs = {
        (k, s): n
        for k, s, n in db.session.execute(
            select(Job.kind, Job.status, func.count()).group_by(Job.kind, Job.status)
        )
    }
    snap.heartbeat_seconds, snap.workers_alive = heartbeat_age(now)
    db.session.rollback()  # end the read transaction: a scrape holds nothing
    return snap


# -- readiness ---------------------------------------------------------------------------------------

_script_heads: dict[str, frozenset[str]] = {}


def migration_heads() -> frozenset[str]:
    """The newest revision(s) in migrations/ (read once per process: the code does not change under it)."""
    directory = current_app.extensions["migrate"].directory
    if directory not in _script_heads:
        from alembic.config import Config
        from alembic.script import ScriptDirectory

        cfg = Config()
        cfg.set_main_option("script_location", directory)
        _script_heads[directory] = frozenset(ScriptDirectory.from_config(cfg).get_heads())
    return _script_heads[directory]


def _check_migrations() -> str | None:
    from sqlalchemy import inspect

    heads = migration_heads()
    try:
        current = set(db.session.execute(text("SELECT version_num FROM alembic_version")).scalars())
    except Exception:  # noqa: BLE001 - no alembic_version table: never migrated
        db.session.rollback()
        if not inspect(db.engine).has_table("alembic_version"):
            return "the database has no migration record: run `flask --app wsgi db upgrade`"
        raise
    if current != set(heads):
        return (
            f"the database is at migration {', '.join(sorted(current)) or 'none'}, this code expects "
            f"{', '.join(sorted(heads))}: run `flask --app wsgi db upgrade`"
        )
    return None


def readiness() -> tuple[bool, dict[str, str]]:
    """(ready, {check: what it found}); a failed check's text says what is wrong."""
    cfg = current_app.config
    checks: dict[str, str] = {}
    ok = True
    try:
        db.session.execute(text("SELECT 1"))
        checks["database"] = "ok"
    except Exception as exc:  # noqa: BLE001 - the point is to say so
        db.session.rollback()
        return False, {"database": f"unreachable ({type(exc).__name__})"}
    problem = _check_migrations()
    checks["migrations"] = problem or "ok"
    ok = ok and problem is None
    now = utcnow()
    limit = float(cfg["READY_QUEUE_MAX_AGE"])
    if limit:
        waited = oldest_queued_seconds(now)
        if waited is not None and waited > limit:
            checks["queue"] = (
                f"the oldest queued event has waited {waited:.0f} s for a worker (limit {limit:.0f} s)"
            )
            ok = False
        else:
            checks["queue"] = "ok" if waited is None else f"ok (oldest queued event waiting {waited:.0f} s)"
    limit = float(cfg["READY_HEARTBEAT_MAX_AGE"])
    if limit:
        age, _alive = heartbeat_age(now)
        if age is None:
            checks["worker"] = "no worker has reported: start `flask --app wsgi worker`"
            ok = False
        elif age > limit:
            checks["worker"] = f"the last worker heartbeat is {age:.0f} s old (limit {limit:.0f} s)"
            ok = False
        else:
            checks["worker"] = f"ok (heartbeat {age:.0f} s ago)"
    db.session.rollback()
    return ok, checks


# -- the worker's heartbeat --------------------------------------------------------------------------


def heartbeat_name() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"[:255]


def beat(name: str | None = None) -> None:
    """Say this worker process is alive (one row per process, updated in place). Commits."""
    name = name or heartbeat_name()
    now = utcnow()
    immediate()
    if not rowcount(
        db.session.execute(update(WorkerHeartbeat).where(WorkerHeartbeat.name == name).values(beat_at=now))
    ):
        insert_ignore(WorkerHeartbeat, {"name": name, "started_at": now, "beat_at": now}, ["name"])
    db.session.commit()


def stop_beating(name: str | None = None) -> None:
    """This worker process stops: its row goes at once. Commits."""
    immediate()
    db.session.execute(delete(WorkerHeartbeat).where(WorkerHeartbeat.name == (name or heartbeat_name())))
    db.session.commit()


def prune_heartbeats(older_than: timedelta = timedelta(days=1)) -> int:
    """Delete heartbeats of processes that died without stopping (the worker's housekeeping). Commits."""
    immediate()
    n = rowcount(
        db.session.execute(delete(WorkerHeartbeat).where(WorkerHeartbeat.beat_at < utcnow() - older_than))
    )
    db.session.commit()
    return n


# -- the dashboard's queue health ----------------------------------------------------------------------


@dataclass
class QueueHealth:
    """The queue at a glance: is it moving, is a worker alive, is anything failing?"""

    oldest_queued_seconds: float | None
    waiting: int
    errors_last_hour: int
    workers_alive: int
    heartbeat_seconds: float | None
    minutes: list[datetime]  # the last hour, minute by minute
    received_per_minute: list[int]
    processed_per_minute: list[int]
    hours: list[datetime]  # the last 48 hours
    errors_per_hour: list[int]
    too_old: bool = False  # the oldest queued event is past READY_QUEUE_MAX_AGE


def _errors_per_hour(now: datetime) -> tuple[list[datetime], list[int], int]:
    """Events in error by the hour of their Stripe time (``created``), last 48 hours, and in the last hour: read
    through the (status, created) index, so only the rows in error are touched (a ``received_at`` range read
    every event of two days: 25 ms of the dashboard's 32 at 1 event/s)."""
    hours = periods("hour", 48, now)
    since = to_unix(hours[0])
    created = db.session.scalars(
        select(StripeEvent.created)
        .where(StripeEvent.status == EV_ERROR, StripeEvent.created >= since)
        .limit(ERRORS_READ_MAX)
    ).all()
    per_hour = [0] * len(hours)
    last_hour = to_unix(now) - 3600
    for ts in created:
        per_hour[min(len(hours) - 1, max(0, int((ts - since) // 3600)))] += 1
    return hours, per_hour, sum(1 for ts in created if ts >= last_hour)


def queue_health(now: datetime | None = None) -> QueueHealth:
    """Read through indexed columns only: events by ``received_at`` (processed ones among those received in
    the last ``PROCESSED_WINDOW``), the queue index for the oldest due event."""
    now = now or utcnow()
    minutes, received = counts_per(StripeEvent.received_at, [], "minute", 60, now)
    # processed per minute among events received in the last PROCESSED_WINDOW (through the received_at index; a
    # retry of an event older than that is not drawn): a window of a day read 86,000 rows at 1 event/s, 120 ms
    _, processed = counts_per(
        StripeEvent.processed_at, [StripeEvent.received_at >= now - PROCESSED_WINDOW], "minute", 60, now
    )
    hours, errors, errors_last_hour = _errors_per_hour(now)
    waiting = int(
        db.session.scalar(
            select(func.count())
            .select_from(StripeEvent)
            .where(StripeEvent.status.in_((EV_QUEUED, EV_PROCESSING)))
        )
        or 0
    )
    oldest = oldest_queued_seconds(now)
    beat_age, alive = heartbeat_age(now)
    limit = float(current_app.config["READY_QUEUE_MAX_AGE"])
    return QueueHealth(
        oldest_queued_seconds=oldest,
        waiting=waiting,
        errors_last_hour=errors_last_hour,
        workers_alive=alive,
        heartbeat_seconds=beat_age,
        minutes=minutes,
        received_per_minute=received,
        processed_per_minute=processed,
        hours=hours,
        errors_per_hour=errors,
        too_old=bool(limit and oldest is not None and oldest > limit),
    )
