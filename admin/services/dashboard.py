"""The counts on the dashboard: what staff look at first.

All times are naive UTC; "this month" is the current UTC calendar month, by a
contribution's receive date (its creation date when it has none).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlalchemy import func, select

from ..extensions import db
from ..models import (
    COMPLETED,
    EV_ERROR,
    EV_PROCESSING,
    EV_QUEUED,
    FAILED,
    PARTIALLY_REFUNDED,
    RECUR_IN_PROGRESS,
    CardTestingSignal,
    Contribution,
    ContributionRecur,
    StripeEvent,
    StripePaymentIntent,
    WebhookRejection,
)
from ..timeutil import utcnow
from .intents import OPEN  # PaymentIntent statuses that mean "started, not finished"

# Contributions that brought money in (a partial refund keeps the rest).
RECEIVED_STATUSES = (COMPLETED, PARTIALLY_REFUNDED)


@dataclass
class MoneyTotal:
    currency: str
    count: int
    amount: int  # minor units


@dataclass
class DashboardCounts:
    since: datetime
    month_start: datetime
    events_24h: int = 0
    events_24h_error: int = 0
    intents_incomplete: int = 0
    subscriptions_active: int = 0
    contributions_month: int = 0
    contributions_month_totals: list[MoneyTotal] = field(default_factory=list)
    contributions_month_failed: int = 0
    events_waiting: int = 0
    card_testing_24h: int = 0
    webhooks_refused: int = 0
    webhooks_refused_last: str | None = None


def month_bounds(now: datetime) -> tuple[datetime, datetime]:
    start = now.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    end = (start + timedelta(days=32)).replace(day=1)
    return start, end


def _count(stmt) -> int:
    return int(db.session.scalar(stmt) or 0)


def dashboard_counts(now: datetime | None = None) -> DashboardCounts:
    now = now or utcnow()
    since = now - timedelta(hours=24)
    month_start, month_end = month_bounds(now)
    c = DashboardCounts(since=since, month_start=month_start)

    recent = StripeEvent.received_at >= since
    c.events_24h = _count(select(func.count()).select_from(StripeEvent).where(recent))
    c.events_24h_error = _count(
        select(func.count()).select_from(StripeEvent).where(recent, StripeEvent.status == EV_ERROR))
    c.intents_incomplete = _count(select(func.count()).select_from(StripePaymentIntent)
                                  .where(StripePaymentIntent.status.in_(OPEN)))
    c.subscriptions_active = _count(select(func.count()).select_from(ContributionRecur)
                                    .where(ContributionRecur.status == RECUR_IN_PROGRESS))

    when = func.coalesce(Contribution.receive_date, Contribution.created_at)
    in_month = (when >= month_start, when < month_end)
    currency = func.lower(Contribution.currency)
    rows = db.session.execute(
        select(currency, func.count(), func.sum(Contribution.amount))
        .where(*in_month, Contribution.status.in_(RECEIVED_STATUSES))
        .group_by(currency)
        .order_by(currency)
    ).all()
    c.contributions_month = sum(int(n) for _, n, _ in rows)
    c.contributions_month_totals = [MoneyTotal(cur, int(n), int(total or 0)) for cur, n, total in rows]
    c.contributions_month_failed = _count(
        select(func.count()).select_from(Contribution).where(*in_month, Contribution.status == FAILED))
    _pipeline_health(c, since)
    return c


def _pipeline_health(c: DashboardCounts, since: datetime) -> None:
    """Is the worker keeping up, is someone card-testing the form, are deliveries being refused?"""
    c.events_waiting = _count(select(func.count()).select_from(StripeEvent)
                              .where(StripeEvent.status.in_((EV_QUEUED, EV_PROCESSING))))
    c.card_testing_24h = _count(select(func.count()).select_from(CardTestingSignal)
                                .where(CardTestingSignal.created_at >= since))
    c.webhooks_refused = _count(select(func.sum(WebhookRejection.count)))
    last = db.session.scalar(select(WebhookRejection).order_by(WebhookRejection.last_at.desc()).limit(1))
    if last is not None:
        c.webhooks_refused_last = f"last: {last.reason}, {last.last_at.strftime('%d %b %H:%M')} UTC"
