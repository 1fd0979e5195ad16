"""Counting refused webhook deliveries (bad signature, too large, not JSON, ...) without a database
write per refusal: the first after a quiet ``WEBHOOK_REJECTION_FLUSH_SECONDS`` is written (and logged)
at once, so the dashboard shows it straight away; a flood after it is written together, with one log
line saying how many (``admin.tally``). An interval of 0 writes every refusal.
"""

from __future__ import annotations

import logging
from collections import Counter

from flask import Flask
from sqlalchemy import update

from admin.dbutil import immediate, insert_ignore, rowcount
from admin.extensions import db
from admin.models import WebhookRejection
from admin.tally import Tally
from admin.timeutil import utcnow

log = logging.getLogger(__name__)


def reason_key(reason: str) -> str:
    return reason.split(":")[0][:64]


def write_counts(counts: Counter) -> None:
    """Add ``counts`` ({(processor id, reason): n}) to the counters. Commits."""
    immediate()
    for (ppid, key), n in counts.items():
        bump = (
            update(WebhookRejection)
            .where(WebhookRejection.processor_id == ppid, WebhookRejection.reason == key)
            .values(count=WebhookRejection.count + n, last_at=utcnow())
        )
        if not rowcount(db.session.execute(bump)) and not insert_ignore(
            WebhookRejection,
            {"processor_id": ppid, "reason": key, "count": n, "last_at": utcnow()},
            ["processor_id", "reason"],
        ):
            db.session.execute(bump)  # a concurrent refusal created the row first
    db.session.commit()


def _summary(counts: Counter) -> str:
    return "webhook deliveries rejected since the last report: " + ", ".join(
        f"{n} x {reason} (processor {ppid})" for (ppid, reason), n in counts.items()
    )


class _Rejections:
    """The process's tally of refused deliveries (``admin.tally``), keyed by (processor, reason)."""

    def __init__(self) -> None:
        self.tally = Tally(write_counts, _summary, setting="WEBHOOK_REJECTION_FLUSH_SECONDS", logger=log)

    def refused(self, ppid: int | None, reason: str, addr: str | None) -> None:
        self.tally.count(
            (ppid, reason_key(reason)), f"webhook rejected for processor {ppid}: {reason} (from {addr})"
        )


def tally(app: Flask) -> _Rejections:
    return app.extensions.setdefault("paydesk_webhook_rejections", _Rejections())
