"""Counting refused webhook deliveries (bad signature, too large, not JSON, ...) without a database
write per refusal.

A flood of forged deliveries must not compete with real webhooks and the worker for the database
(on SQLite, for its one write lock), nor fill the log. Each process keeps a tally: the first refusal
after a quiet ``WEBHOOK_REJECTION_FLUSH_SECONDS`` is written (and logged) at once, so the dashboard
shows it straight away; the ones after it are added up and written together, by a timer, at most
once per interval, with one log line saying how many. An interval of 0 writes every refusal.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections import Counter

from flask import Flask, current_app
from sqlalchemy import update

from ..dbutil import immediate, insert_ignore
from ..extensions import db
from ..models import WebhookRejection
from ..timeutil import utcnow

log = logging.getLogger(__name__)


def reason_key(reason: str) -> str:
    return reason.split(":")[0][:64]


def write_counts(counts: Counter) -> None:
    """Add ``counts`` ({(processor id, reason): n}) to the counters. Commits."""
    immediate()
    for (ppid, key), n in counts.items():
        bump = (update(WebhookRejection)
                .where(WebhookRejection.processor_id == ppid, WebhookRejection.reason == key)
                .values(count=WebhookRejection.count + n, last_at=utcnow()))
        if not db.session.execute(bump).rowcount and not insert_ignore(
                WebhookRejection, {"processor_id": ppid, "reason": key, "count": n, "last_at": utcnow()},
                ["processor_id", "reason"]):
            db.session.execute(bump)  # a concurrent refusal created the row first
    db.session.commit()


class Tally:
    """One process's refusals not yet written."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._pending: Counter = Counter()
        self._last_write = float("-inf")
        self._timer: threading.Timer | None = None
        self._pid = os.getpid()

    def refused(self, ppid: int | None, reason: str, addr: str | None) -> None:
        """Count one refusal: written now after a quiet interval, else with the next timed write."""
        interval = float(current_app.config.get("WEBHOOK_REJECTION_FLUSH_SECONDS", 5))
        key = (ppid, reason_key(reason))
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
            log.warning("webhook rejected for processor %s: %s (from %s)", ppid, reason, addr)
            write_counts(Counter({key: 1}))

    def _flush(self, app: Flask) -> None:
        with self._lock:
            pending, self._pending, self._timer = self._pending, Counter(), None
            self._last_write = time.monotonic()
        if not pending:
            return
        with app.app_context():
            try:
                write_counts(pending)
                summary = ", ".join(f"{n} x {reason} (processor {ppid})" for (ppid, reason), n in pending.items())
                log.warning("webhook deliveries rejected since the last report: %s", summary)
            except Exception:  # noqa: BLE001 - a lost count is not worth a crashed timer; say so
                db.session.rollback()
                log.exception("could not count %d rejected webhook deliveries", sum(pending.values()))
            finally:
                db.session.remove()


def tally(app: Flask) -> Tally:
    return app.extensions.setdefault("paydesk_webhook_rejections", Tally())
