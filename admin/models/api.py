"""The integration API: tokens, remembered answers to idempotent requests, products, the trigger feed, and outgoing
notifications (the URLs that receive them, every delivery)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

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
from sqlalchemy.orm import Mapped, mapped_column

from ..extensions import Model
from ..timeutil import utcnow
from .base import created_column

TOKEN_SCOPES = ("read", "write")
TRIGGER_TOPICS = ("customer", "order", "charge", "invoice_item")


class ApiToken(Model):
    """A token for ``/api/v1``: only a SHA-256 digest of the secret is kept (shown once when made)."""

    __tablename__ = "api_token"
    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(100), unique=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    prefix: Mapped[str] = mapped_column(String(16))  # the first characters, so people can tell tokens apart
    scopes: Mapped[str] = mapped_column(String(64), default="read")  # "read" or "read,write"
    expires_at: Mapped[datetime | None] = mapped_column(DateTime)
    last_used_at: Mapped[datetime | None] = mapped_column(DateTime)
    revoked_at: Mapped[datetime | None] = mapped_column(DateTime)
    created_by: Mapped[str | None] = mapped_column(String(255))
    created_at: Mapped[datetime] = created_column()

    @property
    def scope_list(self) -> list[str]:
        return [s for s in (self.scopes or "").split(",") if s]

    def status(self, now: datetime | None = None) -> str:
        now = now or utcnow()
        if self.revoked_at:
            return "revoked"
        if self.expires_at and self.expires_at <= now:
            return "expired"
        return "active"


class ApiIdempotencyKey(Model):
    """The first answer to a write sent with an ``Idempotency-Key`` (per token), replayed for the same request."""

    __tablename__ = "api_idempotency_key"
    __table_args__ = (UniqueConstraint("token_id", "key", name="uq_api_idempotency_key"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    token_id: Mapped[int] = mapped_column(ForeignKey("api_token.id", ondelete="CASCADE"))
    key: Mapped[str] = mapped_column(String(255))
    request_hash: Mapped[str] = mapped_column(String(64))  # method, path and body
    status_code: Mapped[int | None] = mapped_column(Integer)  # None while the first request is still running
    response_body: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow, nullable=False, index=True)


class Product(Model):
    """A Stripe product made or changed through paydesk (the connector's fields)."""

    __tablename__ = "product"
    __table_args__ = (UniqueConstraint("processor_id", "product_id", name="uq_product_stripe"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    processor_id: Mapped[int] = mapped_column(ForeignKey("payment_processor.id"))
    product_id: Mapped[str] = mapped_column(String(255), index=True)
    name: Mapped[str] = mapped_column(String(255))
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    caption: Mapped[str | None] = mapped_column(String(255))
    description: Mapped[str | None] = mapped_column(Text)
    images: Mapped[list[Any] | None] = mapped_column(JSON)
    shippable: Mapped[bool | None] = mapped_column(Boolean)
    url: Mapped[str | None] = mapped_column(String(2048))
    created_at: Mapped[datetime] = created_column()
    updated_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow, onupdate=utcnow)


class TriggerFeed(Model):
    """One row per new customer, order, charge or invoice item, written at the commit of the transaction
    that recorded it, with ids in commit order (``admin.api.feed``): polling triggers page by ``id``."""

    __tablename__ = "trigger_feed"
    __table_args__ = (
        UniqueConstraint("topic", "processor_id", "object_id", name="uq_trigger_feed_object"),
        Index("ix_trigger_feed_topic_id", "topic", "id"),
    )
    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    topic: Mapped[str] = mapped_column(String(16))
    processor_id: Mapped[int | None] = mapped_column(Integer)
    object_id: Mapped[str] = mapped_column(String(255))  # the Stripe id (cus_, ch_), or contribution:<id>
    record_type: Mapped[str] = mapped_column(String(32))  # stripe_customer, contribution, payment
    record_id: Mapped[int] = mapped_column(Integer)
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow, nullable=False, index=True)


NOTIFICATION_TYPES = (
    "contribution.completed",
    "contribution.failed",
    "contribution.refunded",
    "recurring.status_changed",
)


class NotificationEndpoint(Model):
    """A URL that receives signed JSON when records change (``admin.services.notifications``)."""

    __tablename__ = "notification_endpoint"
    id: Mapped[int] = mapped_column(primary_key=True)
    url: Mapped[str] = mapped_column(String(2048))
    description: Mapped[str | None] = mapped_column(String(255))
    # "*" (every type) or a comma-separated list of NOTIFICATION_TYPES
    events: Mapped[str] = mapped_column(String(255), default="*")
    # admin.crypto.encrypt_list([current, previous?]): both sign while a rotation lasts
    secrets: Mapped[str] = mapped_column(Text)
    secret_hint: Mapped[str] = mapped_column(String(32))  # the current secret masked (admin.crypto.mask)
    previous_hint: Mapped[str | None] = mapped_column(String(32))
    previous_expires_at: Mapped[datetime | None] = mapped_column(DateTime)
    created_by: Mapped[str | None] = mapped_column(String(255))
    created_at: Mapped[datetime] = created_column()

    @property
    def event_list(self) -> list[str]:
        return list(NOTIFICATION_TYPES) if self.events == "*" else [e for e in self.events.split(",") if e]


class NotificationDelivery(Model):
    """One notification for one endpoint; sent (and retried) by an outbox task of kind ``notification``."""

    __tablename__ = "notification_delivery"
    __table_args__ = (Index("ix_notification_delivery_endpoint", "endpoint_id", "id"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    endpoint_id: Mapped[int] = mapped_column(ForeignKey("notification_endpoint.id", ondelete="CASCADE"))
    notification_id: Mapped[str] = mapped_column(String(40), index=True)  # "ntf_...": the same for every URL
    type: Mapped[str] = mapped_column(String(64))
    object_type: Mapped[str] = mapped_column(String(32))
    object_id: Mapped[int] = mapped_column(Integer)
    body: Mapped[str] = mapped_column(Text)  # exactly the JSON sent (a resend sends it again)
    task_id: Mapped[int | None] = mapped_column(ForeignKey("outbox_task.id", ondelete="SET NULL"), index=True)
    response_code: Mapped[int | None] = mapped_column(Integer)  # of the latest attempt
    last_attempt_at: Mapped[datetime | None] = mapped_column(DateTime)
    # set when the receiver took it (cleared by a resend): the delivery's final status kept on the row itself,
    # so its history tells delivered from failed after retention deleted the outbox task
    delivered_at: Mapped[datetime | None] = mapped_column(DateTime)
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow, nullable=False, index=True)
