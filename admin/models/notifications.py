"""Outgoing notifications: the URLs admins registered, and every delivery made to them."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import DateTime, ForeignKey, Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from admin.extensions import db
from admin.models.base import created_column

NOTIFICATION_TYPES = (
    "contribution.completed",
    "contribution.failed",
    "contribution.refunded",
    "recurring.status_changed",
)


class NotificationEndpoint(db.Model):
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


class NotificationDelivery(db.Model):
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
    delivered_at: Mapped[datetime | None] = mapped_column(DateTime)
    created_at: Mapped[datetime] = created_column()
