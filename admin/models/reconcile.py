"""Comparisons of a Stripe account with paydesk's records, kept for a short while (``/reconcile``)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, DateTime, ForeignKey, Index, String
from sqlalchemy.orm import Mapped, mapped_column

from ..extensions import db
from ..timeutil import utcnow


class ReconcileScan(db.Model):
    """One comparison of a processor's charges, refunds and paid invoices in a period with paydesk's
    records (``services/reconcile.scan``): every compared row. Kept in the database, not in a web
    process, because the page's views (page flips, filter keystrokes, the "fix all" confirmation) are
    served by any web process and the "fix all" job by the worker: the job works through the very rows
    its confirmation counted, with an index into them as its cursor. Pages reuse a scan for a minute;
    scans are deleted an hour after they were taken unless an active job works from them."""

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
