"""Comparisons of a Stripe account with paydesk's records, kept for a short while (``/reconcile``)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, DateTime, ForeignKey, Index, Integer, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from admin.extensions import Model
from admin.models.base import Money
from admin.timeutil import utcnow


class ReconcileScan(Model):
    """One comparison of a processor's charges, refunds and paid invoices in a period with paydesk's
    records, taken by a ``reconcile.scan`` job (``services/reconcile/scan``): every compared row. The job
    appends rows as it reads Stripe's pages (``finished_at`` is NULL until it is done); the page and the
    CLI show the newest finished scan of a period, a fix updates its row in place, and the "fix all" job
    works through the very rows its confirmation counted, with an index into them as its cursor."""

    __tablename__ = "reconcile_scan"
    __table_args__ = (Index("ix_reconcile_scan_lookup", "processor_id", "objects", "taken_at"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    processor_id: Mapped[int] = mapped_column(ForeignKey("payment_processor.id", ondelete="CASCADE"))
    objects: Mapped[str] = mapped_column(String(64))  # "charge,invoice,refund": what was compared
    period: Mapped[str] = mapped_column(String(128))  # the period as asked ("days=7", or the dates given)
    since: Mapped[datetime] = mapped_column(DateTime)  # the period as compared
    until: Mapped[datetime] = mapped_column(DateTime)
    taken_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    rows: Mapped[list[dict[str, Any]]] = mapped_column(JSON, default=list)
    job_id: Mapped[int | None] = mapped_column(Integer, index=True)  # the reconcile.scan job taking it
    finished_at: Mapped[datetime | None] = mapped_column(DateTime)  # NULL while its job reads Stripe


class UnmatchedPayment(Model):
    """A payment that named a contribution it does not match (a Checkout session whose
    ``client_reference_id`` names a contribution of another amount, currency or customer, or one paid
    already). The named contribution is left alone; the payment is recorded as a contribution of its
    own (``contribution_id``, no receipt) and listed on ``/reconcile`` until staff mark it reviewed."""

    __tablename__ = "unmatched_payment"
    __table_args__ = (UniqueConstraint("processor_id", "session_id", name="uq_unmatched_payment_session"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    processor_id: Mapped[int] = mapped_column(ForeignKey("payment_processor.id", ondelete="CASCADE"))
    session_id: Mapped[str] = mapped_column(String(255))  # the Checkout session (cs_...)
    named_contribution_id: Mapped[int | None] = mapped_column(Integer)
    contribution_id: Mapped[int | None] = mapped_column(Integer)  # where the payment is recorded
    amount: Mapped[int | None] = mapped_column(Money)
    currency: Mapped[str | None] = mapped_column(String(3))
    customer_id: Mapped[str | None] = mapped_column(String(255))
    reason: Mapped[str] = mapped_column(String(500))
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow, index=True)
    reviewed_at: Mapped[datetime | None] = mapped_column(DateTime)
    reviewed_by: Mapped[str | None] = mapped_column(String(255))
