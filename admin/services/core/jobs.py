"""The one job mechanism: long work (bulk replay, populate, cleanup, imports, bulk cancel, ...)
done in small resumable steps, by the worker in the background or by a CLI command in the
foreground, with progress on the page and in the terminal.

A job kind is a generator function registered with :func:`job_kind`. It does one unit of
work at a time, keeps where it is in ``ctx.cursor`` and ``ctx.done``, and ``yield``s after
each unit. At every yield the runner commits the job row (progress, cursor, tallies),
honours a cancel request, and ends the slice when its time is up. The next slice (the
same worker, another one, or the same job after a restart) calls the function again; it
carries on from ``ctx.cursor``. Units must therefore be idempotent: a crash between a
unit's own commit and the job's commit runs that unit again.

Identity: kind + parameters make ``active_key``, unique while the job is queued, running
or paused, so two staff who start the same job at once get one run (the second is shown
the first). Every start, cancel and resume is written to the audit log.
"""

from __future__ import annotations

import dataclasses
import hashlib
import inspect
import json
import logging
import threading
import time
from collections.abc import Callable, Generator, Iterator
from dataclasses import dataclass, field
from datetime import timedelta
from itertools import islice
from typing import Any, ClassVar

from flask import current_app
from sqlalchemy import Select, select, update

from admin.dbutil import immediate, insert_ignore, parse_id
from admin.errors import ServiceError
from admin.extensions import db
from admin.failures import describe, is_transient, retry_delay
from admin.listing import EXPORT_CHUNK, Filter, Page, capped_counts, keyset_page, walk
from admin.models import PaymentProcessor
from admin.models.jobs import (
    JOB_ACTIVE,
    JOB_CANCELLED,
    JOB_DONE,
    JOB_FAILED,
    JOB_PAUSED,
    JOB_QUEUED,
    JOB_RUNNING,
    JOB_STATUSES,
    Job,
)
from admin.services.core import audit
from admin.services.core.params import JobParams
from admin.timeutil import utcnow

log = logging.getLogger(__name__)

MAX_MESSAGES = 50
MAX_TRANSIENT_RETRIES = 5
JOB_RETRY_SECONDS = 5.0  # a unit's passing failure: tried again after 5, 10, 20, 40, 80 s


@dataclass
class JobKind:
    name: str
    fn: Callable[[JobContext], Generator[None, None, None]]  # closed when the job stops between units
    title: Callable[[dict], str]
    role: str  # the staff role needed to start it
    check: Callable[[dict], object] | None = (
        None  # refuses parameters that cannot work (ServiceError), at start
    )
    one_per_user: bool = (
        False  # a staff user runs one job of this kind at a time (an identical one is shared)
    )
    params: type[JobParams] | None = (
        None  # the kind's typed parameters (a ``core.params.JobParams``): defaults and bounds
    )


_KINDS: dict[str, JobKind] = {}


def job_kind(
    name: str,
    *,
    title: Callable[[dict], str],
    role: str = "operator",
    check: Callable[[dict], object] | None = None,
    one_per_user: bool = False,
    params: type[JobParams] | None = None,
):
    """Mark a generator function as the job kind ``name`` (``register`` makes it known: at app creation,
    ``admin.worker.registries``); ``check(params)`` raises a ``ServiceError`` for parameters that cannot
    work, so they are refused when the job is started (page, CLI or API alike) rather than run as a job
    that does nothing. With ``one_per_user`` a signed-in user who has a job of this kind that has not ended
    cannot start another (a long Stripe scan: work, not a page view). ``params`` is the kind's parameter
    class (``core.params.JobParams``): every start reads its parameters through it (defaults filled in,
    bounds applied), so the page, the CLI and a confirmation all start the same job."""

    def mark(fn):
        fn.job_kind = JobKind(name, fn, title, role, check, one_per_user, params)
        return fn

    return mark


def register(*fns: Any) -> None:  # functions marked by @job_kind (their job_kind attribute)
    """Make the job kinds of these ``@job_kind`` functions known (again: no harm)."""
    for fn in fns:
        k: JobKind = fn.job_kind
        if k.name in _KINDS and _KINDS[k.name].fn is not fn:
            raise RuntimeError(f"two job kinds named {k.name}")
        _KINDS[k.name] = k


def kinds_in(*modules) -> list[Callable]:
    """The ``@job_kind`` functions defined in these modules."""
    return [
        fn
        for m in modules
        for fn in vars(m).values()
        if inspect.isfunction(fn) and isinstance(getattr(fn, "job_kind", None), JobKind)
    ]


def kind(name: str) -> JobKind:
    try:
        return _KINDS[name]
    except KeyError:
        raise ServiceError(f"unknown job kind {name!r}") from None


class JobContext:
    """What a job function sees: its parameters, cursor, progress and tallies."""

    def __init__(self, job: Job):
        self.job = job
        self.job_id = job.id
        self.processor_id = job.processor_id
        self.params: dict[str, Any] = dict(job.params or {})
        self.cursor: dict[str, Any] = dict(job.cursor or {})
        self.result: dict[str, Any] = dict(job.result or {})
        # Kept here, not on the row, while a unit runs: the unit's own transactions never carry
        # the job row, and the runner writes it at each yield (``save``).
        self.done: int = job.done or 0
        self.total: int | None = job.total

    @property
    def processor(self) -> PaymentProcessor | None:
        return db.session.get(PaymentProcessor, self.processor_id) if self.processor_id else None

    def require_processor(self) -> PaymentProcessor:
        """The job's payment processor; a ``ServiceError`` (the job fails with it) when it no longer exists."""
        proc = self.processor
        if proc is None:
            raise ServiceError("the job's payment processor no longer exists")
        return proc

    def count(self, what: str, n: int = 1) -> None:
        counts = self.result.setdefault("counts", {})
        counts[what] = counts.get(what, 0) + n

    def note(self, message: str) -> None:
        messages = self.result.setdefault("messages", [])
        if len(messages) < MAX_MESSAGES:
            messages.append(message[:500])
        elif len(messages) == MAX_MESSAGES:
            messages.append("(more messages not kept)")

    def save(self) -> None:
        """Write progress, cursor and tallies onto the job row (committed by the runner)."""
        self.job.done, self.job.total = self.done, self.total
        self.job.cursor = dict(self.cursor)
        self.job.result = json.loads(json.dumps(self.result, default=str))


def _key(kind_name: str, params: dict, processor_id: int | None) -> str:
    blob = json.dumps([kind_name, processor_id, params], sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()


@dataclass
class Started:
    job: Job
    created: bool  # False: an identical job was running already, and this is it


def prepare(kind_name: str, params: Any, *, later: tuple[str, ...] = ()) -> dict[str, Any]:
    """A job's parameters as its kind reads them: through its parameter class (defaults, bounds), then its
    check; a ``ServiceError`` for parameters that cannot work. ``params``: a dict or a ``JobParams``.
    ``later``: fields still to be given (a confirmation asks for them), whose check waits for the start."""
    k = kind(kind_name)
    if hasattr(params, "as_dict"):
        params = params.as_dict()
    try:
        if k.params is not None:
            params = k.params.of(params).as_dict()
        if k.check:
            k.check(params)
    except ServiceError as err:
        if not (later and err.field in later):
            raise
    return json.loads(json.dumps(params, default=str))


def start(
    kind_name: str, params: Any, *, processor_id: int | None = None, total: int | None = None
) -> Started:
    """Queue a job (the worker picks it up), or return the identical one already active.
    Writes an audit entry for a new job. Commits."""
    k = kind(kind_name)
    params = prepare(kind_name, params)
    key = _key(kind_name, params, processor_id)
    user_id, actor = audit.current_actor()
    immediate()
    if k.one_per_user and user_id is not None:
        _one_per_user(k, key, user_id)
    now = utcnow()
    inserted = insert_ignore(
        Job,
        {
            "kind": kind_name,
            "title": k.title(params)[:255],
            "params": params,
            "active_key": key,
            "processor_id": processor_id,
            "user_id": user_id,
            "actor": actor,
            "status": JOB_QUEUED,
            "done": 0,
            "total": total,
            "cancel_requested": False,
            "created_at": now,
            "updated_at": now,
        },
        ["active_key"],
    )
    job = db.session.scalar(select(Job).where(Job.active_key == key))
    if job is None:  # ended between our insert attempt and the read: start it again
        db.session.rollback()
        return start(kind_name, params, processor_id=processor_id, total=total)
    if inserted:
        audit.record(
            "job.start",
            object_type="job",
            object_id=str(job.id),
            processor_id=processor_id,
            parameters={"kind": kind_name, **params},
            commit=False,
        )
    elif job.status == JOB_PAUSED:
        job.status = JOB_QUEUED
        audit.record(
            "job.resume", object_type="job", object_id=str(job.id), processor_id=processor_id, commit=False
        )
    db.session.commit()
    return Started(job, bool(inserted))


def _one_per_user(k: JobKind, key: str, user_id: int) -> None:
    other = db.session.scalar(
        select(Job)
        .where(Job.kind == k.name, Job.user_id == user_id, Job.status.in_(JOB_ACTIVE), Job.active_key != key)
        .order_by(Job.id)
        .limit(1)
    )
    if other is not None:
        db.session.rollback()
        raise ServiceError(
            f"you have job {other.id} ({other.title}) {other.status} already: one at a time, "
            f"please. Wait for it to end, or cancel it on its page"
        )


def active(kind_name: str, params: dict[str, Any], *, processor_id: int | None = None) -> Job | None:
    """The job of this kind and these parameters that has not ended yet (queued, running or paused)."""
    key = _key(kind_name, json.loads(json.dumps(params, default=str)), processor_id)
    return db.session.scalar(select(Job).where(Job.active_key == key))


def get(job_id: int) -> Job:
    job = db.session.get(Job, parse_id(job_id)) if parse_id(job_id) else None
    if job is None:
        raise ServiceError(f"no job {job_id}")
    return job


def cancel(job: Job) -> Job:
    """Ask a job to stop; one not held by a runner stops at once. Commits."""
    immediate()
    db.session.refresh(job)
    if not job.active:
        raise ServiceError(f"job {job.id} has already ended ({job.status})")
    job.cancel_requested = True
    if job.locked_until is None or job.locked_until < utcnow():
        _finish(job, JOB_CANCELLED)
    audit.record(
        "job.cancel", object_type="job", object_id=str(job.id), processor_id=job.processor_id, commit=False
    )
    db.session.commit()
    return job


def resume(job: Job) -> Job:
    """Queue a paused or failed job again, from its cursor. Commits."""
    immediate()
    db.session.refresh(job)
    if job.status not in (JOB_PAUSED, JOB_FAILED):
        raise ServiceError(f"job {job.id} is {job.status}; only a paused or failed job can be resumed")
    if job.status == JOB_FAILED:
        key = _key(job.kind, job.params or {}, job.processor_id)
        if db.session.scalar(select(Job.id).where(Job.active_key == key)):
            raise ServiceError("an identical job is already active")
        job.active_key = key
    job.status, job.error, job.finished_at, job.cancel_requested = JOB_QUEUED, None, None, False
    job.locked_by = job.locked_until = None
    audit.record(
        "job.resume", object_type="job", object_id=str(job.id), processor_id=job.processor_id, commit=False
    )
    db.session.commit()
    return job


def _finish(job: Job, status: str, error: str | None = None) -> None:
    job.status = status
    job.error = error
    job.active_key = None
    job.locked_by = job.locked_until = None
    job.finished_at = utcnow()


# -- running (the worker runtime claims: admin.worker.queues) -------------------------------------


def run_slice(
    job: Job, worker: str, *, seconds: float | None = None, on_progress: Callable[[Job], None] | None = None
) -> str:
    """Run ``job`` (whose lease ``worker`` holds) until it ends or ``seconds`` pass; returns its status.

    Between slices the job stays ``running`` with no lease, and any worker may continue it."""
    k = kind(job.kind)
    ctx = JobContext(job)
    deadline = None if seconds is None else time.monotonic() + seconds
    lease = timedelta(seconds=current_app.config["WORKER_LEASE_SECONDS"])
    gen = k.fn(ctx)
    heartbeat = _Heartbeat(current_app._get_current_object(), job.id, worker, lease)  # type: ignore[attr-defined]  # proxy typed as Flask
    try:
        for _ in _as_starter(ctx, gen):
            # A unit went through. Write its progress as a writer from the start: a read left open
            # across a long unit would, on SQLite, no longer be allowed to write.
            immediate()
            ctx.cursor.pop("_retries", None)  # passing failures are counted afresh
            ctx.save()
            if job.error and job.error.startswith("retrying: "):
                job.error = None
            job.locked_until = utcnow() + lease
            db.session.commit()
            if on_progress:
                on_progress(job)
            db.session.refresh(job, ["cancel_requested", "locked_by"])
            if job.locked_by != worker:  # our lease ran out and another runner took the job: leave it
                gen.close()
                log.warning(
                    "job %s (%s): lease lost to %s; this runner stops", job.id, job.kind, job.locked_by
                )
                return job.status
            if job.cancel_requested:
                gen.close()
                return _end(job, ctx, JOB_CANCELLED)
            if deadline is not None and time.monotonic() >= deadline:
                gen.close()
                immediate()
                job.locked_by = job.locked_until = None
                db.session.commit()
                return JOB_RUNNING
    except Exception as exc:  # noqa: BLE001 - every failure ends on the job row, shown to staff
        db.session.rollback()
        return _failed(job.id, ctx, exc)
    finally:
        heartbeat.stop()
    return _end(job, ctx, JOB_DONE)


class _Heartbeat:
    """Renews a job's lease from a side thread while one unit of work runs, so a unit that takes
    longer than the lease (a long Stripe scan) is not taken over by another worker meanwhile. Runs
    on its own connection; on SQLite it may wait for the unit's write lock, and simply tries again."""

    def __init__(self, app, job_id: int, worker: str, lease: timedelta):
        self._stop = threading.Event()
        self._thread = threading.Thread(
            target=self._run,
            args=(app, job_id, worker, lease),
            name=f"paydesk-job-{job_id}-lease",
            daemon=True,
        )
        self._thread.start()

    def _run(self, app, job_id: int, worker: str, lease: timedelta) -> None:
        every = max(1.0, lease.total_seconds() / 3)
        while not self._stop.wait(every):
            try:
                with app.app_context(), db.engine.begin() as conn:
                    conn.execute(
                        update(Job)
                        .where(Job.id == job_id, Job.locked_by == worker)
                        .values(locked_until=utcnow() + lease)
                    )
            except Exception as exc:  # noqa: BLE001 - the next beat tries again; the lease has slack
                log.debug("job %s: lease renewal failed for now: %s", job_id, exc)

    def stop(self) -> None:
        self._stop.set()


def _as_starter(ctx: JobContext, gen: Generator[None, None, None]) -> Iterator[None]:
    """Step ``gen`` with what it does attributed to whoever started the job."""
    user_id, actor = ctx.job.user_id, ctx.job.actor
    while True:
        with audit.acting_as(user_id, actor):
            try:
                next(gen)
            except StopIteration:
                return
        yield


def _end(job: Job, ctx: JobContext, status: str) -> str:
    immediate()
    ctx.save()
    _finish(job, status)
    db.session.commit()
    log.info(
        "job %s (%s) %s: %s", job.id, job.kind, status, (job.result or {}).get("counts") or "nothing done"
    )
    return status


def _failed(job_id: int, ctx: JobContext, exc: Exception) -> str:
    immediate()
    job = db.session.get(Job, job_id, populate_existing=True)
    message = describe(exc)
    retries = int((job.cursor or {}).get("_retries", 0)) if job else 0
    if job is None:
        return JOB_FAILED
    if is_transient(exc) and retries < MAX_TRANSIENT_RETRIES:
        job.cursor = {**(job.cursor or {}), "_retries": retries + 1}
        job.error = f"retrying: {message}"[:4000]
        job.locked_by = None
        job.locked_until = utcnow() + retry_delay(retries + 1, base=JOB_RETRY_SECONDS)  # not before then
        db.session.commit()
        log.warning("job %s (%s) hit a passing failure, will retry: %s", job.id, job.kind, message)
        return JOB_RUNNING
    _finish(job, JOB_FAILED, message[:4000])
    db.session.commit()
    log.error("job %s (%s) failed: %s", job.id, job.kind, message)
    return JOB_FAILED


def pause(job: Job) -> None:
    """Stop a job run in the foreground (Ctrl-C), resumable from its cursor (``jobs resume``). Commits."""
    db.session.rollback()
    immediate()
    held = db.session.get_one(Job, job.id, populate_existing=True)
    held.status, held.locked_by, held.locked_until = JOB_PAUSED, None, None
    db.session.commit()


# -- the /jobs page -------------------------------------------------------------------------


def _unknown_kind(kinds: list[str]) -> str | None:
    known = kind_names()
    bad = [k for k in kinds if k not in known]
    return f"{bad[0][:40]!r} is not a kind of job: one of {', '.join(known)}" if bad else None


@dataclass
class JobFilter(Filter):
    LABELS: ClassVar[dict[str, str]] = {"actor": "Started by"}

    status: list[str] = field(default_factory=list, metadata={"choices": JOB_STATUSES})
    kind: list[str] = field(default_factory=list, metadata={"known": _unknown_kind})
    actor: str | None = None


def job_query(flt: JobFilter) -> Select:
    q = select(Job)
    if flt.status:
        q = q.where(Job.status.in_(flt.status))
    if flt.kind:
        q = q.where(Job.kind.in_(flt.kind))
    if flt.actor:
        q = q.where(Job.actor == flt.actor)
    return q


def job_page(flt: JobFilter) -> Page:
    return keyset_page(job_query(flt), [Job.id], flt)


def job_status_counts(flt: JobFilter) -> dict[str, int]:
    """How many jobs of each status match the rest of the filter (each counted up to ``listing.COUNT_CAP``)."""
    return capped_counts(job_query(dataclasses.replace(flt, status=[])), Job.status, Job.id, JOB_STATUSES)


def job_dict(job: Job) -> dict:
    """One job as plain values (``jobs list``, ``jobs show``, the CSV of ``/jobs``)."""
    return {
        "id": job.id,
        "kind": job.kind,
        "title": job.title,
        "status": job.status,
        "done": job.done,
        "total": job.total,
        "percent": job.percent,
        "actor": job.actor,
        "params": job.params,
        "result": job.result,
        "error": job.error,
        "created_at": job.created_at.isoformat(timespec="seconds") if job.created_at else None,
        "finished_at": job.finished_at.isoformat(timespec="seconds") if job.finished_at else None,
    }


def job_rows(flt: JobFilter, limit: int | None = None) -> Iterator[dict]:
    """Every job the filter matches, newest first, as dicts, a keyset chunk at a time."""
    chunk = min(limit or EXPORT_CHUNK, EXPORT_CHUNK)
    rows = (j for part in walk(job_query(flt), [Job.id], flt, scalars=True, chunk=chunk) for j in part)
    yield from (job_dict(j) for j in islice(rows, limit))


def kind_names() -> list[str]:
    return sorted(_KINDS)
