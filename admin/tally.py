"""Counting refusals without a database write and a log line per refusal.

A flood of refused requests (forged webhook deliveries, donation-form requests without a token, a
rate limit hit thousands of times) must not compete with real work for the database (on SQLite, for
its one write lock) nor fill the log. Each process keeps a :class:`Tally`: the first refusal after a
quiet interval is written and logged at once, so staff see it straight away; the ones after it are
added up per key and written together by a timer, at most once per interval, with one log line
saying how many. An interval of 0 writes every refusal.

Used by the webhook endpoint (``webhooks/rejections.py``) and the donation form
(``services/donations/guard.py``); each says how its counts are written and summed up in words.
"""

from __future__ import annotations

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

    def __init__(self, write: Callable[[Counter], None], summary: Callable[[Counter], str], *,
                 setting: str, default: float = 5.0, logger: logging.Logger = log) -> None:
        self._write, self._summary, self._setting, self._default = write, summary, setting, default
        self._log = logger
        self._lock = threading.Lock()
        self._pending: Counter = Counter()
        self._last_write = float("-inf")
        self._timer: threading.Timer | None = None
        self._pid = os.getpid()

    def count(self, key: Hashable, message: str, write_one: Callable[[], None] | None = None) -> None:
        """Count one refusal: written (and ``message`` logged) now after a quiet interval, else added up and
        written with the next timed batch. ``write_one``: how to write it when it is written alone (with
        details a batch does not keep); default ``write({key: 1})``."""
        interval = float(current_app.config.get(self._setting, self._default))
        with self._lock:
            if self._pid != os.getpid():  # a forked child: the parent's timer is not here
                self._pid, self._timer, self._pending = os.getpid(), None, Counter()
            now = time.monotonic()
            if now - self._last_write >= interval and not self._pending:
                self._last_write = now
                write_now = True
            else:
                self._pending[key] += 1
                write_now = False
                if self._timer is None:
                    app = current_app._get_current_object()
                    self._timer = threading.Timer(max(0.0, interval - (now - self._last_write)), self._flush,
                                                  args=(app,))
                    self._timer.daemon = True
                    self._timer.start()
        if write_now:
            self._log.warning("%s", message)
            write_one() if write_one is not None else self._write(Counter({key: 1}))

    def flush(self, app: Flask) -> None:
        """Write what is pending now (tests; a process about to stop)."""
        with self._lock:
            timer = self._timer
        if timer is not None:
            timer.cancel()
        self._flush(app)

    def _flush(self, app: Flask) -> None:
        with self._lock:
            pending, self._pending, self._timer = self._pending, Counter(), None
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
