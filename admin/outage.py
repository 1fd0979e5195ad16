"""Logging that stays readable through an outage: one full traceback per distinct error, then one
summary line per interval ("database unavailable: 57 requests refused in the last 10 s").

An outage makes the same error happen on every request and every worker round. Logging each one in
full wrote about 23 kB per refused request (103 MB for a 20 s PostgreSQL stop under load); this
keeps it to one traceback per kind of error (every way of saying "the database is unavailable" is one
kind), one line for each new message, and a summary line every ``OUTAGE_LOG_INTERVAL`` seconds.

    throttled("web", "database unavailable: {n} requests refused in the last {seconds} s").error(exc)

One log per app process and name (threads share it). An error seen again after a quiet interval
starts a new outage and gets its traceback again.
"""

from __future__ import annotations

import logging
import os
import re
import threading
import time

from flask import current_app

from admin.failures import database_unavailable, describe

log = logging.getLogger(__name__)

# A failure retried for less than this long is routine, not an outage: no ERROR, no traceback.
GRACE_SECONDS = 2.0

# Set in a request's WSGI environ when it was refused with 503 because the database is unavailable: the
# refusal is counted and summarised here, so gunicorn's access log (gunicorn.conf.py) leaves it out rather
# than write one line per refused request while Stripe retries its deliveries.
REFUSED_ENVIRON_KEY = "paydesk.outage_refused"


def refused_in_outage() -> None:
    """Mark the current request as an outage's counted 503 (see ``REFUSED_ENVIRON_KEY``)."""
    from flask import request

    request.environ[REFUSED_ENVIRON_KEY] = "1"


def signature(exc: BaseException) -> str:
    """What makes two errors "the same" (one traceback between them): every error that means the database
    is unavailable is one ("connection refused", "terminating connection due to administrator command", "the
    database system is starting up" are the same outage); any other is its types and the first line of its
    message, numbers blanked."""
    if database_unavailable(exc):
        return "database unavailable"
    return f"{type(exc).__name__}/{type(getattr(exc, 'orig', None)).__name__}: {message_key(exc)}"


def message_key(exc: BaseException) -> str:
    orig = getattr(exc, "orig", None)
    text = str(orig if orig is not None else exc).strip()
    return re.sub(r"[0-9]+", "N", (text.splitlines() or [""])[0])[:300]


class ThrottledLog:
    """Counts errors; logs the first of each distinct kind with its traceback, a new message of a kind already
    seen as one line, and the rest as one summary line per interval. ``summary`` is a format string with
    ``{n}`` and ``{seconds}``."""

    def __init__(self, logger: logging.Logger, summary: str, interval: float):
        self.logger = logger
        self.summary = summary
        self.interval = max(0.01, float(interval))
        self._lock = threading.Lock()
        self._seen: set[str] = set()  # kinds of error logged with a traceback in this outage
        self._said: set[str] = set()  # messages logged in this outage
        self._count = 0
        self._window_start = 0.0
        self._last = float("-inf")
        self._timer: threading.Timer | None = None
        self._fully_logged = 0
        self._pid = os.getpid()
        self._retrying: dict[float, bool] = {}  # failures being retried that have said so (by start time)

    def error(self, exc: BaseException, what: str = "") -> bool:
        """Count one failure; True when it was logged in full (the first of its kind in this outage). A failure
        of the same kind whose message is new (the database now "starting up" rather than "refusing
        connections") gets one line without its traceback."""
        key = signature(exc)
        now = time.monotonic()
        with self._lock:
            if self._pid != os.getpid():  # a forked child: the parent's timer thread is not here
                self._pid, self._timer, self._count, self._fully_logged = os.getpid(), None, 0, 0
            if now - self._last > self.interval:  # quiet for a whole interval: a new outage
                self._seen.clear()
                self._said.clear()
            self._last = now
            first = key not in self._seen
            message = message_key(exc)
            new_message = message not in self._said
            self._seen.add(key)
            self._said.add(message)
            self._count += 1
            self._fully_logged += first or new_message
            if self._timer is None:
                self._window_start = now
                self._timer = threading.Timer(self.interval, self.flush)
                self._timer.daemon = True
                self._timer.start()
        line = describe(exc) if isinstance(exc, Exception) else str(exc)
        if first:
            self.logger.error(
                "%s%s (full traceback once; then a summary every %g s)",
                what and f"{what}: ",
                line,
                self.interval,
                exc_info=exc,
            )
        elif new_message:  # the same kind of error, saying something new: one line, no traceback
            self.logger.error("%s%s", what and f"{what}: ", line)
        return first

    def retrying(self, exc: BaseException, what: str, since: float) -> bool:
        """A failure that is being retried, failing since ``since`` (``time.monotonic()``). For its first
        ``GRACE_SECONDS`` it is routine, not an error (SQLite's "database is locked" while another writer
        commits, a dropped connection made again): one INFO line when it starts, not counted. Past that it
        is an outage, logged as :meth:`error` logs it (True when in full)."""
        if time.monotonic() - since < GRACE_SECONDS:
            if since not in self._retrying:
                self._retrying[since] = True
                while len(self._retrying) > 64:  # remember only recent ones
                    self._retrying.pop(next(iter(self._retrying)))
                line = describe(exc) if isinstance(exc, Exception) else str(exc)
                self.logger.info("%s%s: trying again", what and f"{what}: ", line)
            return False
        return self.error(exc, what)

    def flush(self) -> None:
        """Log the summary of the interval now ending (also called by the timer)."""
        with self._lock:
            n, full = self._count, self._fully_logged
            self._count = self._fully_logged = 0
            seconds = time.monotonic() - self._window_start
            self._timer = None
        if n > full:  # not when every failure of the interval was already logged in full
            self.logger.warning(self.summary.format(n=n, seconds=f"{seconds:.3g}"))


def throttled(name: str, summary: str, logger: logging.Logger | None = None) -> ThrottledLog:
    """This app's throttled log called ``name`` (created on first use)."""
    logs: dict[str, ThrottledLog] = current_app.extensions.setdefault("paydesk_throttled_logs", {})
    found = logs.get(name)
    if found is None:
        with _CREATING:  # two threads failing at once share one log
            found = logs.get(name)
            if found is None:
                interval = current_app.config.get("OUTAGE_LOG_INTERVAL", 10)
                found = logs[name] = ThrottledLog(logger or log, summary, interval)
    return found


_CREATING = threading.Lock()
