"""What paydesk last found when it compared a record with Stripe's side of it."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, Boolean, DateTime, ForeignKey, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from admin.extensions import Model
from admin.timeutil import utcnow


class SubscriptionCheck(Model):
    """The last comparison of a subscription in Stripe (with its invoices and charges) with the
    recurring contribution, contributions and payments paydesk has for it. Written whenever
    paydesk looks at both sides (the subscription's page, an import, a compare job); what the
    ``/subscriptions`` filter "differs from Stripe" reads."""

    __tablename__ = "subscription_check"
    __table_args__ = (UniqueConstraint("processor_id", "subscription_id", name="uq_subscription_check"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    processor_id: Mapped[int] = mapped_column(ForeignKey("payment_processor.id"))
    subscription_id: Mapped[str] = mapped_column(String(255))
    checked_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    differs: Mapped[bool] = mapped_column(Boolean, default=False, index=True)
    stripe_status: Mapped[str | None] = mapped_column(String(32))  # None: Stripe has no such subscription
    # [{"what": "status", "stripe": "canceled", "paydesk": "In Progress", "object": "sub_..."}, ...]
    differences: Mapped[list[dict[str, Any]]] = mapped_column(JSON, default=list)
