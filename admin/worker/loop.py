"""A worker's rounds: claim and run due events, then outbox tasks, then a slice of a job (``queues``);
threads; the first thread's periodic chores.

* database gone: when even recording a failure fails because the database is unreachable, the rest of
  the claimed batch is handed back to the queue as soon as the database answers (``queues.hand_back``);
  the loop backs off while the database is away and logs one traceback per distinct error, then a
  summary line per interval.
* idle: a thread that found nothing waits ``WORKER_IDLE_SLEEP`` at most, and on PostgreSQL is woken as soon
  as an event is stored (``wakeup``: LISTEN/NOTIFY).
* ``worker --processes N`` is ``supervisor.run_processes``, N processes each running this loop.
"""

from __future__ import annotations

import logging
import signal
import threading
import time
from datetime import timedelta

from flask import Flask, current_app

from admin.dbutil import DATABASE_SUMMARY, refresh_statistics, rollback_quietly
from admin.extensions import db
from admin.failures import database_unavailable, describe
from admin.limiter import purge_counters
from admin.outage import throttled
from admin.services.core import ratelimit, retention
from admin.services.donations import guard as donation_guard
from admin.services.monitoring import alarms, multiproc
from admin.services.monitoring import health as monitoring_health
from admin.services.staff import sessions
from admin.webhooks.pipeline import worker_name
from admin.worker import queues, wakeup

log = logging.getLogger(__name__)
ALARM_CHECK_SECONDS = 60.0
HOUSEKEEPING_SECONDS = 600.0  # pruning old donation refusals and rate-limit counters, the retention rules


def run_batch(worker: str) -> int:
    """Claim and process one batch of events, then run due side effects and a slice of a job; how many
    events and tasks were handled (processed, or handed back to the queue because the database went away)."""
    cfg = current_app.config
    events = queues.run_events(worker)
    if events.handed_back:
        return events.count
    ran = queues.run_outbox(worker, cfg["WORKER_BATCH"])
    ran += queues.run_jobs(worker, cfg["JOB_SLICE_SECONDS"])
    return events.count + ran


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
    (or made no request) ``sessions.KEEP`` ago, heartbeats of dead workers; then the retention rules
    (``retention.housekeeping``: outbox, jobs, audit log, ... a bounded number of batches each), and
    SQLite's planner statistics once a day (``dbutil.refresh_statistics``)."""
    cfg = current_app.config
    longest = max(
        int(cfg[k]) for k in ("LOGIN_LOCKOUT_SECONDS", "DONATE_IP_FAILURE_WINDOW", "DONATE_IP_BLOCK_SECONDS")
    )
    donation_guard.prune()
    ratelimit.prune(timedelta(seconds=longest))
    purge_counters()
    sessions.prune(sessions.KEEP)
    monitoring_health.prune_heartbeats()
    retention.housekeeping()
    refresh_statistics()  # SQLite's planner statistics, once a day


def _beat() -> None:
    """Say this process is alive (/readyz, the dashboard), right after a batch: the database answers then. A
    failure is not the worker's problem (its batches report the database's state): the row just ages."""
    try:
        monitoring_health.beat()
    except Exception as exc:  # noqa: BLE001
        rollback_quietly()
        log.debug("worker heartbeat not written: %s", describe(exc))


def run_forever(app: Flask, concurrency: int = 1, stop: threading.Event | None = None) -> None:
    """The long-running worker: ``concurrency`` threads until SIGINT/SIGTERM (or ``stop``)."""
    stop = stop or threading.Event()
    if threading.current_thread() is threading.main_thread():
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, lambda *_: stop.set())
    multiproc.tidy()  # metrics files of processes that have gone (PROMETHEUS_MULTIPROC_DIR set: see metrics)
    doorbell = wakeup.Doorbell()  # idle threads wait here: a new event (PostgreSQL) or the poll wakes them
    with app.app_context():
        listener = wakeup.start_listening(db.engine, doorbell, stop)

    def loop(first: bool) -> None:
        with app.app_context():
            worker = worker_name()
            outage = throttled("database", DATABASE_SUMMARY, log)
            failures = throttled("worker", "worker batch failed {n} times in the last {seconds} s", log)
            pause = 0.0
            failing_since = None  # when the database stopped answering (time.monotonic()), or None
            next_alarm_check = next_housekeeping = next_beat = 0.0
            while not stop.is_set():
                try:
                    done = run_batch(worker)
                    pause, failing_since = 0.0, None
                    if first and time.monotonic() >= next_beat:
                        _beat()
                        next_beat = time.monotonic() + float(app.config["WORKER_HEARTBEAT_SECONDS"])
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
                if not done and not stop.is_set():
                    doorbell.wait(app.config["WORKER_IDLE_SLEEP"])
            if first:
                try:
                    monitoring_health.stop_beating()
                except Exception:  # noqa: BLE001 - the row ages out instead
                    rollback_quietly()
            db.session.remove()

    threads = [
        threading.Thread(target=loop, args=(i == 0,), name=f"paydesk-worker-{i}", daemon=True)
        for i in range(concurrency)
    ]
    for t in threads:
        t.start()
    while any(t.is_alive() for t in threads):
        time.sleep(0.2)
        if stop.is_set():
            doorbell.close()
            for t in threads:
                t.join()
    if listener is not None:
        listener.join()
