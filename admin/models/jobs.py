"""Background jobs and the record of every attempt to process an event."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, DateTime, ForeignKey, Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from admin.extensions import Model
from admin.models.base import created_column
from admin.timeutil import utcnow

# job.status
JOB_QUEUED = "queued"  # waiting for a worker (new, or between two slices of work)
JOB_RUNNING = "running"  # a worker (or a CLI command) holds its lease
JOB_PAUSED = "paused"  # stopped part-way (Ctrl-C in the CLI); resumable from its cursor
JOB_DONE = "done"
JOB_FAILED = "failed"
JOB_CANCELLED = "cancelled"
JOB_ACTIVE = (JOB_QUEUED, JOB_RUNNING, JOB_PAUSED)
JOB_STATUSES = (JOB_QUEUED, JOB_RUNNING, JOB_PAUSED, JOB_DONE, JOB_FAILED, JOB_CANCELLED)


class Job(Model):
    """A long piece of work (bulk replay, populate, import, ...), done in resumable steps.

    ``active_key`` is the job's identity (kind + parameters) while it is queued, running
    or paused, and NULL once it has ended: the unique constraint is what makes two staff
    who start the same job at the same moment get one run.
    """

    __tablename__ = "job"
    __table_args__ = (Index("ix_job_queue", "status", "locked_until"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    kind: Mapped[str] = mapped_column(String(64), index=True)
    title: Mapped[str] = mapped_column(String(255))
    params: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    active_key: Mapped[str | None] = mapped_column(String(64), unique=True)
    processor_id: Mapped[int | None] = mapped_column(ForeignKey("payment_processor.id"))
    user_id: Mapped[int | None] = mapped_column(ForeignKey("user.id"))
    actor: Mapped[str] = mapped_column(String(255))
    status: Mapped[str] = mapped_column(String(16), default=JOB_QUEUED)
    done: Mapped[int] = mapped_column(Integer, default=0)
    total: Mapped[int | None] = mapped_column(Integer)
    cursor: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    result: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    error: Mapped[str | None] = mapped_column(Text)
    cancel_requested: Mapped[bool] = mapped_column(default=False)
    locked_by: Mapped[str | None] = mapped_column(String(64))
    locked_until: Mapped[datetime | None] = mapped_column(DateTime)
    created_at: Mapped[datetime] = created_column()
    started_at: Mapped[datetime | None] = mapped_column(DateTime)
    updated_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow, onupdate=utcnow)
    finished_at: Mapped[datetime | None] = mapped_column(DateTime, index=True)  # retention deletes by it

    @property
    def percent(self) -> int:
        if self.status == JOB_DONE:
            return 100
        if not self.total:
            return 0
        return max(0, min(100, int(self.done * 100 / self.total)))

    @property
    def active(self) -> bool:
        """Not ended: queued, running or paused (an identical job is not started beside it)."""
        return self.status in JOB_ACTIVE

    @property
    def moving(self) -> bool:
        """Queued or running: its page polls for progress (a paused job waits for someone to resume it)."""
        return self.status in (JOB_QUEUED, JOB_RUNNING)


class EventAttempt(Model):
    """One run of an event's handler: by the worker, a replay, or a bulk job."""

    __tablename__ = "event_attempt"
    id: Mapped[int] = mapped_column(primary_key=True)
    event_row_id: Mapped[int] = mapped_column(ForeignKey("stripe_event.id", ondelete="CASCADE"), index=True)
    started_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    finished_at: Mapped[datetime | None] = mapped_column(DateTime)
    worker: Mapped[str] = mapped_column(String(64))
    actor: Mapped[str | None] = mapped_column(String(255))  # who asked (a replay), None for the worker
    outcome: Mapped[str] = mapped_column(String(16))
    message: Mapped[str | None] = mapped_column(Text)
    stripe_request_ids: Mapped[str | None] = mapped_column(String(500))


class Confirmation(Model):
    """What a confirmation showed (a bulk action's or a tool's "do this to N?"), kept on the server.

    The page gets a random token; only its hash is stored. Running the job needs the token back, from the
    same user, before ``expires_at``, once: the job then runs exactly ``kind`` with ``params`` (what was
    counted and shown), never criteria read again from the request."""

    __tablename__ = "confirmation"
    id: Mapped[int] = mapped_column(primary_key=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("user.id", ondelete="CASCADE"))
    kind: Mapped[str] = mapped_column(String(64))
    processor_id: Mapped[int | None] = mapped_column(ForeignKey("payment_processor.id", ondelete="CASCADE"))
    params: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)  # the job's parameters, as confirmed
    shown: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)  # title, count, money, options, ...
    count: Mapped[int | None] = mapped_column(Integer)
    created_at: Mapped[datetime] = created_column()
    expires_at: Mapped[datetime] = mapped_column(DateTime, index=True)
    used_at: Mapped[datetime | None] = mapped_column(DateTime)
