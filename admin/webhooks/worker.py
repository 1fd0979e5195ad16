"""The worker: turns queued ``stripe_event`` rows into business records.

* claim: due rows (queued and ``next_attempt_at`` passed, or processing with an
  expired lease) are marked processing with a lease, in a short transaction
  (PostgreSQL: ``FOR UPDATE SKIP LOCKED``; SQLite: ``BEGIN IMMEDIATE``).
* process: one transaction per event holds the business records and the
  event's new status, so an event is applied entirely or not at all; a worker
  killed mid-event leaves the row to be claimed again when its lease ends.
* serialise: on PostgreSQL, transaction-scoped advisory locks on every Stripe
  object the event touches (invoice, charge, intent, subscription, ...) keep
  events about the same object from running at the same time. SQLite runs
  one writer at a time anyway.
* fail: transient failures (Stripe 429/5xx/network after the gateway's own
  retries, database busy, a unique-key race with a concurrent event) are
  retried with exponential backoff up to ``WORKER_MAX_ATTEMPTS``, then left
  in ``error``; permanent ones go to ``error`` at once; types with no handler
  are ``ignored`` with the reason.
* database gone: when even recording a failure fails because the database is
  unreachable, the rest of the claimed batch is handed back to the queue as
  soon as the database answers again (retried with backoff), instead of
  waiting out its lease; the loop backs off while the database is away and
  logs one traceback per distinct error, then a summary line per interval.
* processes: ``worker --processes N`` is a supervisor of N worker processes:
  it reaps one that exits, starts another in its place (with a growing pause
  while they keep dying), logs each restart, and stops them all on SIGTERM.
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import threading
import time
from collections.abc import Callable
from datetime import timedelta
from typing import TYPE_CHECKING, NamedTuple

from flask import Flask, current_app
from sqlalchemy import and_, or_, select, update
from sqlalchemy.exc import DBAPIError, IntegrityError

from admin.dbutil import (
    DATABASE_SUMMARY,
    any_row,
    immediate,
    lock_objects,
    retry_while_unavailable,
    rollback_quietly,
)
from admin.extensions import db
from admin.failures import database_unavailable, describe, is_transient
from admin.limiter import purge_counters
from admin.models import EV_ERROR, EV_IGNORED, EV_PROCESSING, EV_QUEUED, StripeEvent
from admin.models.jobs import EventAttempt
from admin.outage import throttled
from admin.services.core import jobs, outbox, ratelimit
from admin.services.donations import guard as donation_guard
from admin.services.monitoring import alarms
from admin.services.settings.processors import processor_ref
from admin.stripe_gateway import GatewayError
from admin.timeutil import utcnow
from admin.webhooks.context import EventContext
from admin.webhooks.registry import handler_for

if TYPE_CHECKING:
    from multiprocessing.process import BaseProcess

log = logging.getLogger(__name__)
ALARM_CHECK_SECONDS = 60.0
HOUSEKEEPING_SECONDS = 600.0  # pruning old donation refusals and rate-limit counters


def worker_name() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{threading.get_ident()}"[:64]


class Claimed(NamedTuple):
    id: int
    keys: list[str]  # the Stripe objects the event touches: its locks


def claim(worker: str, limit: int) -> list[Claimed]:
    """Mark up to ``limit`` due events as processing by ``worker``; oldest Stripe event first."""
    cfg = current_app.config
    now = utcnow()
    due = or_(and_(StripeEvent.status == EV_QUEUED, StripeEvent.next_attempt_at <= now),
              and_(StripeEvent.status == EV_PROCESSING, StripeEvent.locked_until < now))
    if not any_row(select(StripeEvent.id).where(due)):
        return []
    immediate()
    cols = (StripeEvent.invoice_id, StripeEvent.subscription_id, StripeEvent.payment_intent_id,
            StripeEvent.charge_id, StripeEvent.object_id)
    rows = db.session.execute(
        select(StripeEvent.id, *cols).where(due).order_by(StripeEvent.created, StripeEvent.id).limit(limit)
        .with_for_update(skip_locked=True)).all()
    claimed = [Claimed(r[0], sorted({k for k in r[1:] if k})) for r in rows]
    ids = [c.id for c in claimed]
    if ids:
        db.session.execute(update(StripeEvent).where(StripeEvent.id.in_(ids)).values(
            status=EV_PROCESSING, locked_by=worker, attempts=StripeEvent.attempts + 1,
            locked_until=now + timedelta(seconds=cfg["WORKER_LEASE_SECONDS"])))
    db.session.commit()
    return claimed


def process(claimed: Claimed, worker: str, *, actor: str | None = None,
            on_done: Callable[[StripeEvent, str | None], None] | None = None) -> str | None:
    """Run the handler for one claimed event; returns its new status (None if it was not ours).

    Each run is recorded as an ``EventAttempt`` (with ``actor`` when staff asked for it) in
    the transaction that sets the event's status; ``on_done(row, error)`` runs in that same
    transaction too (a replay writes its audit entry there)."""
    cfg = current_app.config
    row_id = claimed.id
    started = utcnow()
    ctx = None
    try:
        immediate()
        lock_objects(claimed.keys)  # first, so the row read next is the state after any other holder
        row = db.session.get(StripeEvent, row_id, populate_existing=True)
        if row is None or row.status != EV_PROCESSING or row.locked_by != worker:
            db.session.rollback()
            return None
        processor = processor_ref(row.processor_id)
        if processor is None:
            raise LookupError(f"payment processor {row.processor_id} no longer exists")
        if row.attempts > cfg["WORKER_MAX_ATTEMPTS"] and actor is None:  # staff replays always run
            row.status, row.status_reason = EV_ERROR, None
            row.last_error = row.last_error or f"gave up after {row.attempts - 1} attempts (worker stopped mid-event)"
        else:
            handler = handler_for(row.type)
            if handler is None:
                row.status, row.status_reason = EV_IGNORED, f"paydesk has no handler for {row.type}"
            else:
                # the cached ProcessorRef stands in for the row (the fields handlers read, no session)
                ctx = EventContext(row, processor)  # type: ignore[arg-type]
                with outbox.caused_by(row.id):
                    handler(ctx)
                row.status = ctx.outcome
                row.status_reason = "; ".join(ctx.notes)[:2000] or None
            row.last_error = None
        row.processed_at = utcnow()
        row.locked_by = row.locked_until = None
        status = row.status
        _attempt(row, worker, actor, started, status, row.status_reason,
                 ctx.reader.request_ids if ctx is not None else [])
        if on_done:
            on_done(row, None)
        db.session.commit()
        return status
    except Exception as exc:  # noqa: BLE001 - every failure is recorded on the event, never swallowed
        rollback_quietly()
        if database_unavailable(exc):
            raise  # not the event's fault: run_batch hands it back, with the rest of the batch
        return _record_failure(row_id, worker, exc, actor=actor, started=started, on_done=on_done,
                               request_ids=ctx.reader.request_ids if ctx is not None else [])


def _attempt(row: StripeEvent, worker: str, actor: str | None, started, outcome: str, message: str | None,
             request_ids: list[str]) -> None:
    ids = ",".join(dict.fromkeys(request_ids))
    db.session.add(EventAttempt(event_row_id=row.id, started_at=started, finished_at=utcnow(), worker=worker[:64],
                                actor=actor, outcome=outcome, message=(message or None) and message[:4000],
                                stripe_request_ids=ids[:500] or None))


def _record_failure(row_id: int, worker: str, exc: Exception, *, actor: str | None = None, started=None,
                    on_done: Callable[[StripeEvent, str | None], None] | None = None,
                    request_ids: list[str] | None = None) -> str:
    cfg = current_app.config
    transient = is_transient(exc)
    message = describe(exc)
    immediate()
    row = db.session.get(StripeEvent, row_id, populate_existing=True)
    if row is None or row.locked_by != worker:
        db.session.rollback()
        return EV_ERROR
    row.last_error = message[:4000]
    row.locked_by = row.locked_until = None
    if transient and row.attempts < cfg["WORKER_MAX_ATTEMPTS"]:
        row.status = EV_QUEUED
        row.next_attempt_at = utcnow() + backoff(row.attempts, conflict=isinstance(exc, IntegrityError))
        log.warning("event %s (%s) failed, retry %d: %s", row.event_id, row.type, row.attempts, message)
    else:
        row.status = EV_ERROR
        row.processed_at = utcnow()
        if transient:
            row.last_error = f"gave up after {row.attempts} attempts: {message}"[:4000]
        log.error("event %s (%s) failed: %s", row.event_id, row.type, message,
                  exc_info=not isinstance(exc, GatewayError | DBAPIError))
    status = row.status
    rids = list(request_ids or []) + ([exc.request_id] if isinstance(exc, GatewayError) and exc.request_id else [])
    _attempt(row, worker, actor, started or utcnow(), "retry" if status == EV_QUEUED else EV_ERROR, message, rids)
    if on_done:
        on_done(row, message)
    db.session.commit()
    return status


def backoff(attempts: int, *, conflict: bool = False) -> timedelta:
    cfg = current_app.config
    base = cfg["WORKER_BACKOFF_BASE"] / (10 if conflict else 1)
    return timedelta(seconds=min(cfg["WORKER_BACKOFF_MAX"], base * 2 ** max(0, attempts - 1)))


def run_batch(worker: str) -> int:
    """Claim and process one batch of events, then run due side effects; how many events and tasks were
    handled (processed, or handed back to the queue because the database went away)."""
    claimed = claim(worker, current_app.config["WORKER_BATCH"])
    claimed_at = time.monotonic()
    for i, one in enumerate(claimed):
        try:
            process(one, worker)
            continue
        except Exception as exc:
            if not database_unavailable(exc):
                raise
            lost = exc
        # The database went away mid-event (not even the failure could be recorded): hand this event and the
        # rest back as soon as it answers, rather than leave them to wait out the lease (WORKER_LEASE_SECONDS).
        # Outside the except block, so a failure here does not log the first one's traceback again.
        release(worker, claimed[i:], lost, until=claimed_at + current_app.config["WORKER_LEASE_SECONDS"])
        return len(claimed)
    ran = outbox.run_due(worker, current_app.config["WORKER_BATCH"])
    ran += jobs.run_due(worker, current_app.config["JOB_SLICE_SECONDS"])
    return len(claimed) + ran


def release(worker: str, events: list[Claimed], exc: Exception, *, until: float | None = None) -> None:
    """Put claimed events back in the queue, due now, as soon as the database answers (retried with backoff
    until ``until``, the end of their lease, when anyone may claim them anyway). The first was being
    processed when the database went away: it keeps its attempt and the error; the others were not
    attempted and get theirs back."""
    first, rest = events[0].id, [e.id for e in events[1:]]
    message = describe(exc)[:4000]

    def hand_back() -> None:
        mine = (StripeEvent.locked_by == worker, StripeEvent.status == EV_PROCESSING)
        back = {"status": EV_QUEUED, "locked_by": None, "locked_until": None, "next_attempt_at": utcnow()}
        immediate()
        db.session.execute(update(StripeEvent).where(StripeEvent.id == first, *mine)
                           .values(last_error=message, **back).execution_options(synchronize_session=False))
        if rest:
            db.session.execute(update(StripeEvent).where(StripeEvent.id.in_(rest), *mine)
                               .values(attempts=StripeEvent.attempts - 1, **back)
                               .execution_options(synchronize_session=False))
        db.session.commit()

    retry_while_unavailable(hand_back, what=f"handing {len(events)} claimed event(s) back to the queue",
                            until=until)
    log.warning("database unavailable mid-batch: %d claimed event(s) handed back to the queue", len(events))


def run_once(max_rounds: int = 10_000) -> int:
    """Process everything that is due now (tests, cron, ``worker --once``); returns how many events ran."""
    worker = worker_name()
    total = 0
    for _ in range(max_rounds):
        done = run_batch(worker)
        if not done:
            break
        total += done
    return total


def housekeeping() -> None:
    """Delete what no limit, alarm or page needs any more (the worker's first thread, every
    ``HOUSEKEEPING_SECONDS``): donation refusals older than ``DONATE_REFUSAL_KEEP_DAYS``, ``rate_limit``
    counters whose window and block have ended, expired ``limiter_counter`` rows, staff sessions that ended
    (or made no request) ``sessions.KEEP`` ago."""
    from admin.services.staff import sessions

    cfg = current_app.config
    longest = max(int(cfg[k]) for k in ("LOGIN_LOCKOUT_SECONDS", "DONATE_IP_FAILURE_WINDOW", "DONATE_IP_BLOCK_SECONDS"))
    donation_guard.prune()
    ratelimit.prune(timedelta(seconds=longest))
    purge_counters()
    sessions.prune(sessions.KEEP)


def run_forever(app: Flask, concurrency: int = 1, stop: threading.Event | None = None) -> None:
    """The long-running worker: ``concurrency`` threads until SIGINT/SIGTERM (or ``stop``)."""
    stop = stop or threading.Event()
    if threading.current_thread() is threading.main_thread():
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, lambda *_: stop.set())

    def loop(first: bool) -> None:
        with app.app_context():
            worker = worker_name()
            outage = throttled("database", DATABASE_SUMMARY, log)
            failures = throttled("worker", "worker batch failed {n} times in the last {seconds} s", log)
            pause = 0.0
            failing_since = None  # when the database stopped answering (time.monotonic()), or None
            next_alarm_check = next_housekeeping = 0.0
            while not stop.is_set():
                try:
                    done = run_batch(worker)
                    pause, failing_since = 0.0, None
                    if first and time.monotonic() >= next_alarm_check:
                        # The card-testing alarm's warning is logged even when no staff page is open.
                        alarms.check()
                        next_alarm_check = time.monotonic() + ALARM_CHECK_SECONDS
                    if first and time.monotonic() >= next_housekeeping:
                        housekeeping()
                        next_housekeeping = time.monotonic() + HOUSEKEEPING_SECONDS
                except Exception as exc:  # noqa: BLE001 - keep the worker alive; the event rows keep the state
                    rollback_quietly()
                    if database_unavailable(exc):
                        # Try again soon (at most DB_RETRY_BACKOFF_MAX apart): work resumes within that
                        # long of the database's return.
                        # A moment's "database is locked" is retried without an ERROR; an outage is logged.
                        failing_since = failing_since or time.monotonic()
                        outage.retrying(exc, "worker waiting for the database", failing_since)
                        pause = min(max(2 * pause, 0.05), app.config["DB_RETRY_BACKOFF_MAX"])
                        stop.wait(pause)
                        continue
                    failures.error(exc, "worker batch failed")
                    done = 0
                if not done:
                    stop.wait(app.config["WORKER_IDLE_SLEEP"])
            db.session.remove()

    threads = [threading.Thread(target=loop, args=(i == 0,), name=f"paydesk-worker-{i}", daemon=True)
               for i in range(concurrency)]
    for t in threads:
        t.start()
    while any(t.is_alive() for t in threads):
        time.sleep(0.2)
        if stop.is_set():
            for t in threads:
                t.join()


# -- worker --processes N: a supervisor --------------------------------------------------------------

QUICK_EXIT_SECONDS = 60.0  # a process that dies sooner than this after its start "keeps dying"


def restart_pause(quick_exits: int, cap: float) -> float:
    """Seconds to wait before starting a replacement: none after one death, then 1, 2, 4, ... up to ``cap``
    while each replacement dies again within ``QUICK_EXIT_SECONDS``."""
    return 0.0 if quick_exits <= 1 else min(cap, 2.0 ** (quick_exits - 2))


def describe_exit(code: int | None) -> str:
    if code is None:
        return "exited"
    if code < 0:
        try:
            return f"was killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"was killed by signal {-code}"
    return f"exited with status {code}"


class _Slot:
    def __init__(self, name: str):
        self.name = name
        self.proc: BaseProcess | None = None
        self.started = 0.0
        self.quick_exits = 0
        self.start_at = 0.0  # monotonic time of the next start, while waiting to restart


def run_processes(app: Flask, processes: int, concurrency: int, *, target=None,
                  stop: threading.Event | None = None) -> None:
    """Supervise ``processes`` worker processes of ``concurrency`` threads each (PostgreSQL): Python threads
    share one core, processes use them all. The parent does no event work itself: it starts the children
    (forked before any thread starts, each dropping the inherited connections), reaps each one that exits
    and starts another in its place (at once, then after 1, 2, 4 ... ``WORKER_RESTART_BACKOFF_MAX`` s while
    they keep dying within a minute), logs every restart, and on SIGINT/SIGTERM (or ``stop``) stops them
    all (SIGTERM: each finishes its current event) and waits for them. ``target(app, concurrency)`` is the
    child's work (tests)."""
    import multiprocessing
    from multiprocessing.connection import wait

    ctx = multiprocessing.get_context("fork")
    target = target or _child
    stop = stop or threading.Event()
    if threading.current_thread() is threading.main_thread():
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, lambda *_: stop.set())
    cap = float(app.config["WORKER_RESTART_BACKOFF_MAX"])
    with app.app_context():
        db.engine.dispose(close=False)
    slots = [_Slot(f"paydesk-worker-p{i}") for i in range(1, processes + 1)]

    def start(slot: _Slot) -> BaseProcess:
        proc = slot.proc = ctx.Process(target=target, args=(app, concurrency), name=slot.name, daemon=True)
        proc.start()
        slot.started = time.monotonic()
        return proc

    for slot in slots:
        start(slot)
    try:
        while not stop.is_set():
            now = time.monotonic()
            waits = [s.start_at - now for s in slots if s.proc is None]
            wait([s.proc.sentinel for s in slots if s.proc is not None],
                 timeout=max(0.0, min([0.5, *waits])))
            now = time.monotonic()
            for slot in slots:
                if slot.proc is not None and not slot.proc.is_alive():  # is_alive() reaps it: no zombie
                    if stop.is_set():
                        break
                    lived = now - slot.started
                    slot.quick_exits = slot.quick_exits + 1 if lived < QUICK_EXIT_SECONDS else 1
                    pause = restart_pause(slot.quick_exits, cap)
                    slot.start_at = now + pause
                    log.error("worker process %s (pid %s) %s after %.1f s; starting a new one%s", slot.name,
                              slot.proc.pid, describe_exit(slot.proc.exitcode), lived,
                              f" in {pause:g} s ({slot.quick_exits} quick exits in a row)" if pause else "")
                    slot.proc.close()
                    slot.proc = None
                if slot.proc is None and now >= slot.start_at and not stop.is_set():
                    log.warning("worker process %s restarted (pid %s)", slot.name, start(slot).pid)
    finally:
        children = [s.proc for s in slots if s.proc is not None]
        for child in children:
            if child.is_alive():
                child.terminate()  # SIGTERM: the child finishes its current event and stops
        for child in children:
            child.join(timeout=60)
            if child.is_alive():
                log.error("worker process %s (pid %s) did not stop within 60 s: killing it", child.name, child.pid)
                child.kill()
                child.join(timeout=10)


def _child(app: Flask, concurrency: int) -> None:
    with app.app_context():
        db.engine.dispose(close=False)  # never share the parent's connections
    stop = threading.Event()
    parent = os.getppid()

    def orphaned() -> None:  # the supervisor was killed (SIGKILL): stop too rather than run unsupervised
        while not stop.wait(1.0):
            if os.getppid() != parent:
                log.error("worker supervisor (pid %s) is gone: stopping", parent)
                stop.set()

    threading.Thread(target=orphaned, name="paydesk-worker-parent-watch", daemon=True).start()
    run_forever(app, concurrency, stop)
