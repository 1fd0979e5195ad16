"""Counting refusals without a database write and a log line per refusal.

A flood of refused requests (forged webhook deliveries, donation-form requests without a token, a
rate limit hit thousands of times) must not compete with real work for the database (on SQLite, for
its one write lock) nor fill the log. Each process keeps a :class:`Tally`: the first refusal after a
quiet interval is written and logged at once, so staff see it straight away; the ones after it are
added up per key and written together by a timer, at most once per interval, with one log line
saying how many. An interval of 0 writes every refusal.

The batches of every tally (of every app) in a process are written by one thread, :data:`flusher`: it
runs while a batch is waiting and ends when none is, so a process never has more than one, however many
apps or tests it makes. It is started again in a forked child when needed, and stopped at exit (and by
:func:`stop`) after writing what is still waiting; :func:`flush_app` writes one app's batches now (an app
about to lose its database).

Used by the webhook endpoint (``webhooks/rejections.py``) and the donation form
(``services/donations/guard.py``); each says how its counts are written and summed up in words.
"""

from __future__ import annotations

import atexit
import logging
import os
import threading
import time
from collections import Counter
from collections.abc import Callable, Hashable

from flask import Flask, current_app

from admin.extensions import db

log = logging.getLogger(__name__)


class Tally:
    """One process's refusals not yet written.

    ``write(counts)`` adds a Counter of ``{key: n}`` to the database and commits; ``summary(counts)``
    is the log line for a batch written together; ``setting`` names the configuration value holding
    the interval in seconds (``default`` when unset)."""

    def __init__(
        self,
        write: Callable[[Counter], None],
        summary: Callable[[Counter], str],
        *,
        setting: str,
        default: float = 5.0,
        logger: logging.Logger = log,
    ) -> None:
        self._write, self._summary, self._setting, self._default = write, summary, setting, default
        self._log = logger
        self._lock = threading.Lock()
        self._pending: Counter = Counter()
        self._last_write = float("-inf")
        self._scheduled = False
        self._pid = os.getpid()

    def count(self, key: Hashable, message: str, write_one: Callable[[], None] | None = None) -> None:
        """Count one refusal: written (and ``message`` logged) now after a quiet interval, else added up and
        written with the next timed batch. ``write_one``: how to write it when it is written alone (with
        details a batch does not keep); default ``write({key: 1})``."""
        interval = float(current_app.config.get(self._setting, self._default))
        with self._lock:
            if self._pid != os.getpid():  # a forked child: the parent's batch is the parent's to write
                self._pid, self._scheduled, self._pending = os.getpid(), False, Counter()
            now = time.monotonic()
            if now - self._last_write >= interval and not self._pending:
                self._last_write = now
                write_now = True
            else:
                self._pending[key] += 1
                write_now = False
                if not self._scheduled:
                    self._scheduled = True
                    app = current_app._get_current_object()  # type: ignore[attr-defined]  # proxy typed as Flask
                    flusher.schedule(self, app, self._last_write + max(0.0, interval))
        if write_now:
            self._log.warning("%s", message)
            write_one() if write_one is not None else self._write(Counter({key: 1}))

    def flush(self, app: Flask) -> None:
        """Write what is pending now (tests; a process about to stop)."""
        flusher.cancel(self)
        self._flush(app)

    def _flush(self, app: Flask) -> None:
        with self._lock:
            pending, self._pending, self._scheduled = self._pending, Counter(), False
            self._last_write = time.monotonic()
        if not pending:
            return
        with app.app_context():
            try:
                self._write(pending)
                self._log.warning("%s", self._summary(pending))
            except Exception:  # noqa: BLE001 - a lost count is not worth a crashed timer; say so
                db.session.rollback()
                self._log.exception("could not write %d tallied refusals", sum(pending.values()))
            finally:
                db.session.remove()


class _Flusher:
    """The process's one timer thread: writes each waiting batch when it is due (the earliest first), and
    ends when no batch is waiting."""

    def __init__(self) -> None:
        self._reset()

    def _reset(self) -> None:
        self._cond = threading.Condition()
        self._due: dict[Tally, tuple[float, Flask]] = {}  # the tally, when its batch is due, and its app
        self._thread: threading.Thread | None = None

    def schedule(self, tally: Tally, app: Flask, at: float) -> None:
        """Write ``tally``'s batch at ``at`` (``time.monotonic()``), in ``app``'s context."""
        with self._cond:
            self._due.setdefault(tally, (at, app))
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="paydesk-tally", daemon=True)
                self._thread.start()
            self._cond.notify()

    def cancel(self, tally: Tally) -> None:
        with self._cond:
            self._due.pop(tally, None)

    @property
    def running(self) -> bool:
        with self._cond:
            return self._thread is not None

    def _run(self) -> None:
        while True:
            with self._cond:
                while True:
                    if not self._due:
                        self._thread = None  # nothing waits: end; the next batch starts a thread again
                        return
                    tally, (at, app) = min(self._due.items(), key=lambda item: item[1][0])
                    wait = at - time.monotonic()
                    if wait <= 0:
                        del self._due[tally]
                        break
                    self._cond.wait(wait)
            tally._flush(app)

    def flush(self, app: Flask | None = None) -> None:
        """Write the waiting batches now: ``app``'s, or every app's."""
        with self._cond:
            now = [(tally, owner) for tally, (_at, owner) in self._due.items() if app is None or owner is app]
            for tally, _owner in now:
                del self._due[tally]
            self._cond.notify()
        for tally, owner in now:
            tally._flush(owner)

    def stop(self, timeout: float = 5.0) -> None:
        """Write every waiting batch and let the thread end (a process shutting down)."""
        self.flush()
        with self._cond:
            thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout)


flusher = _Flusher()


def flush_app(app: Flask) -> None:
    """Write ``app``'s waiting batches now (before its database goes away)."""
    flusher.flush(app)


def stop() -> None:
    """Write every waiting batch and end the timer thread; run at exit."""
    flusher.stop()


atexit.register(stop)
if hasattr(os, "register_at_fork"):  # a child starts with no thread and nothing of its parent's waiting
    os.register_at_fork(after_in_child=flusher._reset)
