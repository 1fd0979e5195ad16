"""``worker --processes N``: a supervisor of N worker processes (PostgreSQL: Python threads share one core,
processes use them all). It reaps one that exits, starts another in its place (with a growing pause while
they keep dying), logs each restart, and stops them all on SIGTERM. Each child runs ``loop.run_forever``.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import signal
import threading
import time
from multiprocessing.connection import wait
from multiprocessing.process import BaseProcess

from flask import Flask

from admin.extensions import db
from admin.services.monitoring import multiproc
from admin.worker.loop import run_forever

log = logging.getLogger(__name__)

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


def run_processes(
    app: Flask, processes: int, concurrency: int, *, target=None, stop: threading.Event | None = None
) -> None:
    """Supervise ``processes`` worker processes of ``concurrency`` threads each (PostgreSQL): Python threads
    share one core, processes use them all. The parent does no event work itself: it starts the children
    (forked before any thread starts, each dropping the inherited connections), reaps each one that exits
    and starts another in its place (at once, then after 1, 2, 4 ... ``WORKER_RESTART_BACKOFF_MAX`` s while
    they keep dying within a minute), logs every restart, and on SIGINT/SIGTERM (or ``stop``) stops them
    all (SIGTERM: each finishes its current event) and waits for them. ``target(app, concurrency)`` is the
    child's work (tests)."""
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
            wait([s.proc.sentinel for s in slots if s.proc is not None], timeout=max(0.0, min([0.5, *waits])))
            now = time.monotonic()
            for slot in slots:
                if slot.proc is not None and not slot.proc.is_alive():  # is_alive() reaps it: no zombie
                    if stop.is_set():
                        break
                    lived = now - slot.started
                    slot.quick_exits = slot.quick_exits + 1 if lived < QUICK_EXIT_SECONDS else 1
                    pause = restart_pause(slot.quick_exits, cap)
                    slot.start_at = now + pause
                    log.error(
                        "worker process %s (pid %s) %s after %.1f s; starting a new one%s",
                        slot.name,
                        slot.proc.pid,
                        describe_exit(slot.proc.exitcode),
                        lived,
                        f" in {pause:g} s ({slot.quick_exits} quick exits in a row)" if pause else "",
                    )
                    slot.proc.close()
                    slot.proc = None
                    multiproc.tidy()
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
                log.error(
                    "worker process %s (pid %s) did not stop within 60 s: killing it", child.name, child.pid
                )
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
