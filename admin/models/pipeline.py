"""The webhook pipeline: the event log and queue, side effects, signals and refusals."""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column, relationship

from admin.extensions import Model
from admin.models.base import EV_QUEUED, Money, created_column
from admin.timeutil import utcnow

if TYPE_CHECKING:
    from admin.models.processors import PaymentProcessor


class StripeEvent(Model):
    """Every Stripe event paydesk has seen; also the processing queue."""

    __tablename__ = "stripe_event"
    __table_args__ = (
        UniqueConstraint("processor_id", "event_id", name="uq_stripe_event"),
        Index("ix_stripe_event_queue", "status", "next_attempt_at"),
        Index("ix_stripe_event_type_created", "type", "created"),
        # /events (bench/events_page.py): newest first by (created, id), and its keyset pages...
        Index("ix_stripe_event_created_id", "created", "id"),
        # ...filtered by status, or by type and status; the status counts read these indexes only
        Index("ix_stripe_event_status_created_id", "status", "created", "id"),
        Index("ix_stripe_event_type_status_created_id", "type", "status", "created", "id"),
        # ...and one processor's events per status (``ppid``): its counts stay index-only and bounded
        Index("ix_stripe_event_processor_status_created_id", "processor_id", "status", "created", "id"),
    )
    id: Mapped[int] = mapped_column(primary_key=True)
    processor_id: Mapped[int] = mapped_column(ForeignKey("payment_processor.id"), index=True)
    event_id: Mapped[str] = mapped_column(String(255))
    type: Mapped[str] = mapped_column(String(100))
    created: Mapped[int] = mapped_column(BigInteger, default=0)  # Stripe's unix time
    livemode: Mapped[bool] = mapped_column(Boolean, default=False)
    api_version: Mapped[str | None] = mapped_column(String(64))
    object_id: Mapped[str | None] = mapped_column(String(255), index=True)
    customer_id: Mapped[str | None] = mapped_column(String(255), index=True)
    subscription_id: Mapped[str | None] = mapped_column(String(255), index=True)
    invoice_id: Mapped[str | None] = mapped_column(String(255), index=True)
    charge_id: Mapped[str | None] = mapped_column(String(255), index=True)
    payment_intent_id: Mapped[str | None] = mapped_column(String(255), index=True)
    raw: Mapped[str] = mapped_column(Text)
    source: Mapped[str] = mapped_column(String(16), default="webhook")  # webhook | populate | replay
    status: Mapped[str] = mapped_column(String(16), default=EV_QUEUED)
    status_reason: Mapped[str | None] = mapped_column(Text)
    no_receipt: Mapped[bool] = mapped_column(Boolean, default=False)
    refetch: Mapped[bool] = mapped_column(Boolean, default=False)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime | None] = mapped_column(DateTime)
    locked_until: Mapped[datetime | None] = mapped_column(DateTime)
    locked_by: Mapped[str | None] = mapped_column(String(64))
    last_error: Mapped[str | None] = mapped_column(Text)
    received_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow, index=True)
    processed_at: Mapped[datetime | None] = mapped_column(DateTime)

    processor: Mapped[PaymentProcessor] = relationship()


class OutboxTask(Model):
    """Side effects that must follow a committed transaction (Stripe metadata, receipts)."""

    __tablename__ = "outbox_task"
    __table_args__ = (Index("ix_outbox_queue", "status", "next_attempt_at"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    kind: Mapped[str] = mapped_column(String(64))
    # "<kind>:<what>", e.g. "receipt:42": one task per side effect, however often it is asked for.
    key: Mapped[str] = mapped_column(String(255), unique=True)
    processor_id: Mapped[int | None] = mapped_column(ForeignKey("payment_processor.id"))
    payload: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    status: Mapped[str] = mapped_column(String(16), default=EV_QUEUED)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    locked_until: Mapped[datetime | None] = mapped_column(DateTime)
    last_error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = created_column()
    done_at: Mapped[datetime | None] = mapped_column(DateTime)
    # The stored event whose processing asked for this task (None when staff or a job did).
    event_row_id: Mapped[int | None] = mapped_column(
        ForeignKey("stripe_event.id", ondelete="SET NULL"), index=True
    )
    # A kind retried for a length of time (``outbox.runner(retry_for=...)``): failed for good after this.
    retry_until: Mapped[datetime | None] = mapped_column(DateTime)


class CardTestingSignal(Model):
    """A failed charge with no customer and no known intent: a card-testing probe."""

    __tablename__ = "card_testing_signal"
    id: Mapped[int] = mapped_column(primary_key=True)
    processor_id: Mapped[int] = mapped_column(ForeignKey("payment_processor.id"))
    charge_id: Mapped[str] = mapped_column(String(255), unique=True)
    event_id: Mapped[str | None] = mapped_column(String(255))
    amount: Mapped[int | None] = mapped_column(Money)
    currency: Mapped[str | None] = mapped_column(String(3))
    failure_code: Mapped[str | None] = mapped_column(String(64))
    decline_code: Mapped[str | None] = mapped_column(String(64))
    card_fingerprint: Mapped[str | None] = mapped_column(String(64), index=True)
    card_country: Mapped[str | None] = mapped_column(String(4))
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow, index=True)


class WebhookRejection(Model):
    """Counter of refused webhook deliveries, by processor and reason."""

    __tablename__ = "webhook_rejection"
    __table_args__ = (UniqueConstraint("processor_id", "reason", name="uq_webhook_rejection"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    processor_id: Mapped[int | None] = mapped_column(Integer)
    reason: Mapped[str] = mapped_column(String(64))
    count: Mapped[int] = mapped_column(BigInteger, default=0)
    last_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)


class WorkerHeartbeat(Model):
    """A running worker process says it is alive: ``/readyz`` and the dashboard read the freshest ``beat_at``.

    One row per process (``host:pid``), written every ``WORKER_HEARTBEAT_SECONDS``, deleted when it stops;
    rows of processes that died without stopping age out and are deleted by the worker's housekeeping."""

    __tablename__ = "worker_heartbeat"
    name: Mapped[str] = mapped_column(String(255), primary_key=True)
    started_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    beat_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow, index=True)
