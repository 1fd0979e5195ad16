"""Constants and column helpers shared by every table."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, DateTime
from sqlalchemy.orm import Mapped, mapped_column

from admin.timeutil import utcnow

# Contribution statuses (CiviCRM names).
PENDING = "Pending"
COMPLETED = "Completed"
FAILED = "Failed"
CANCELLED = "Cancelled"
REFUNDED = "Refunded"
PARTIALLY_REFUNDED = "Partially refunded"
CONTRIBUTION_STATUSES = (PENDING, COMPLETED, FAILED, CANCELLED, REFUNDED, PARTIALLY_REFUNDED)

# Recurring contribution statuses.
RECUR_PENDING = "Pending"
RECUR_IN_PROGRESS = "In Progress"
RECUR_FAILING = "Failing"
RECUR_CANCELLED = "Cancelled"
RECUR_COMPLETED = "Completed"

# stripe_event.status
EV_LOGGED = "logged"
EV_QUEUED = "queued"
EV_PROCESSING = "processing"
EV_SUCCESS = "success"
EV_ERROR = "error"
EV_IGNORED = "ignored"
EVENT_STATUSES = (EV_LOGGED, EV_QUEUED, EV_PROCESSING, EV_SUCCESS, EV_ERROR, EV_IGNORED)

ROLES = ("viewer", "operator", "admin")

Money = BigInteger  # minor units


def created_column() -> Mapped[datetime]:
    return mapped_column(DateTime, default=utcnow, nullable=False)
