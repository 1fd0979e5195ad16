"""Waking an idle worker thread as soon as an event is stored, instead of at its next poll.

An idle thread waits at the :class:`Doorbell` for at most ``WORKER_IDLE_SLEEP`` before it looks at the queues
again (the poll: on SQLite, and the fallback on PostgreSQL). On PostgreSQL the webhook endpoint's insert of
a queued event also sends ``NOTIFY`` on ``dbutil.EVENTS_CHANNEL`` (delivered when that transaction commits),
and each worker process keeps one connection of its own listening there (:func:`start_listening`): every
notification wakes one idle thread at once. A lost connection is opened again with a growing pause; while it
is away the poll goes on, so nothing waits longer than before.
"""

from __future__ import annotations

import logging
import threading
from typing import Any

from admin.dbutil import EVENTS_CHANNEL

log = logging.getLogger(__name__)
LISTEN_RETRY_MAX = 30.0  # seconds between tries to open the listening connection again, at most


class Doorbell:
    """Where idle threads wait: :meth:`ring` wakes one waiting thread (or, when none waits, lets the next
    one to wait go on at once); after :meth:`close` (the worker is stopping) no thread waits any more."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._rings = 0
        self._waiting = 0
        self._closed = False

    def ring(self) -> None:
        with self._cond:
            if self._rings < max(1, self._waiting):  # never more rings than threads to wake
                self._rings += 1
                self._cond.notify()

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify_all()

    def wait(self, timeout: float) -> bool:
        """Wait until rung (or closed) or ``timeout`` seconds have passed; True when rung or closed."""
        with self._cond:
            self._waiting += 1
            try:
                rung = self._cond.wait_for(lambda: self._rings > 0 or self._closed, timeout)
                if rung and not self._closed:
                    self._rings -= 1
                return rung
            finally:
                self._waiting -= 1


def start_listening(engine: Any, doorbell: Doorbell, stop: threading.Event) -> threading.Thread | None:
    """PostgreSQL: a thread that rings ``doorbell`` for each notification on ``EVENTS_CHANNEL`` until ``stop``.
    None on other databases (they are polled)."""
    if engine.dialect.name != "postgresql":
        return None
    thread = threading.Thread(
        target=listen, args=(engine, doorbell, stop), name="paydesk-worker-listen", daemon=True
    )
    thread.start()
    return thread


def listen(engine: Any, doorbell: Doorbell, stop: threading.Event, *, check: float = 0.5) -> None:
    """Listen on a connection of its own (not one of the pool's), looking at ``stop`` every ``check`` seconds."""
    pause = 0.5
    while not stop.is_set():
        try:
            cargs, cparams = engine.dialect.create_connect_args(engine.url)
            conn = engine.dialect.loaded_dbapi.connect(*cargs, **cparams)
            try:
                conn.autocommit = True
                conn.execute(f"LISTEN {EVENTS_CHANNEL}")
                log.debug("worker listening for new events on %s", EVENTS_CHANNEL)
                pause = 0.5
                doorbell.ring()  # anything stored while it was not listening is looked for now
                while not stop.is_set():
                    for _ in conn.notifies(timeout=check):
                        doorbell.ring()
            finally:
                conn.close()
        except Exception as exc:  # noqa: BLE001 - the poll goes on meanwhile; try again after a pause
            if stop.is_set():
                return
            log.info("worker not listening for new events (polling meanwhile): %s", exc)
            stop.wait(pause)
            pause = min(pause * 2, LISTEN_RETRY_MAX)
