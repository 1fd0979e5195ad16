"""The counts on the dashboard: what staff look at first.

All times are naive UTC; "this month" is the current UTC calendar month, by a
contribution's receive date (its creation date when it has none).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlalchemy import func, select

from admin.extensions import db
from admin.models import (
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
from admin.money import MoneyTotal, money_totals
from admin.services.intents.queries import OPEN  # PaymentIntent statuses that mean "started, not finished"
from admin.timeutil import utcnow

# Contributions that brought money in (a partial refund keeps the rest).
RECEIVED_STATUSES = (COMPLETED, PARTIALLY_REFUNDED)


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
        select(func.count()).select_from(StripeEvent).where(recent, StripeEvent.status == EV_ERROR)
    )
    c.intents_incomplete = _count(
        select(func.count()).select_from(StripePaymentIntent).where(StripePaymentIntent.status.in_(OPEN))
    )
    c.subscriptions_active = _count(
        select(func.count())
        .select_from(ContributionRecur)
        .where(ContributionRecur.status == RECUR_IN_PROGRESS)
    )

    when = func.coalesce(Contribution.receive_date, Contribution.created_at)
    in_month = (when >= month_start, when < month_end)
    c.contributions_month_totals = money_totals(
        select(Contribution).where(*in_month, Contribution.status.in_(RECEIVED_STATUSES))
    )
    c.contributions_month = sum(t.count for t in c.contributions_month_totals)
    c.contributions_month_failed = _count(
        select(func.count()).select_from(Contribution).where(*in_month, Contribution.status == FAILED)
    )
    _pipeline_health(c, since)
    return c


def _pipeline_health(c: DashboardCounts, since: datetime) -> None:
    """Is the worker keeping up, is someone card-testing the form, are deliveries being refused?"""
    c.events_waiting = _count(
        select(func.count())
        .select_from(StripeEvent)
        .where(StripeEvent.status.in_((EV_QUEUED, EV_PROCESSING)))
    )
    c.card_testing_24h = _count(
        select(func.count()).select_from(CardTestingSignal).where(CardTestingSignal.created_at >= since)
    )
    c.webhooks_refused = _count(select(func.sum(WebhookRejection.count)))
    last = db.session.scalar(select(WebhookRejection).order_by(WebhookRejection.last_at.desc()).limit(1))
    if last is not None:
        c.webhooks_refused_last = f"last: {last.reason}, {last.last_at.strftime('%d %b %H:%M')} UTC"


# -- charts: counts per day, month (or hour), zero-filled ------------------------------------

_FORMATS = {"minute": "%Y-%m-%d %H:%M", "hour": "%Y-%m-%d %H", "day": "%Y-%m-%d", "month": "%Y-%m"}


def bucket(col, unit: str):
    """A SQL expression naming the minute, hour, day or month of a (naive UTC) datetime column, cheap enough to
    group hundreds of thousands of rows: PostgreSQL's ``date_trunc`` (a timestamp); on SQLite the stored
    text cut to "2026-11-03 14", "2026-11-03" or "2026-11" (SQLAlchemy stores SQLite datetimes as ISO
    text, so the period is a prefix: no date function per row, 2-3 times faster than ``strftime``)."""
    from admin.dbutil import is_postgres

    if is_postgres():
        return func.date_trunc(unit, col)
    return func.substr(col, 1, len(datetime(2026, 1, 1).strftime(_FORMATS[unit])))


def periods(unit: str, n: int, now: datetime) -> list[datetime]:
    """The starts of the last ``n`` minutes, hours, days or months up to ``now``, oldest first."""
    if unit == "month":
        starts = [now.replace(day=1, hour=0, minute=0, second=0, microsecond=0)]
        while len(starts) < n:
            starts.append((starts[-1] - timedelta(days=1)).replace(day=1))
        return starts[::-1]
    step = {"minute": timedelta(minutes=1), "hour": timedelta(hours=1)}.get(unit, timedelta(days=1))
    last = now.replace(second=0, microsecond=0)
    if unit != "minute":
        last = last.replace(minute=0)
    if unit == "day":
        last = last.replace(hour=0)
    return [last - step * i for i in range(n - 1, -1, -1)]


def counts_per(
    when, where: list, unit: str, n: int, now: datetime | None = None, *, weight=None
) -> tuple[list[datetime], list[int]]:
    """How many rows (``where``) fall in each of the last ``n`` periods by ``when``; (starts, counts).
    ``weight``: a column saying how many each row stands for (summed instead of counting rows)."""
    starts = periods(unit, n, now or utcnow())
    key = bucket(when, unit)
    fmt = _FORMATS[unit]
    how_many = func.count() if weight is None else func.coalesce(func.sum(weight), 0)
    rows = {
        k.strftime(fmt) if isinstance(k, datetime) else k: int(count)
        for k, count in db.session.execute(
            select(key, how_many).where(when >= starts[0], *where).group_by(key)
        )
    }
    return starts, [rows.get(s.strftime(fmt), 0) for s in starts]


@dataclass
class ChartData:
    labels: list[str]
    series: list[tuple[str, list[int]]]


def contribution_charts(now: datetime | None = None) -> dict[str, ChartData]:
    """The dashboard's charts: completed contributions per day (30 days) and per month (12), and
    failures per day (failed contributions, and Stripe events paydesk could not process)."""
    now = now or utcnow()
    when = func.coalesce(Contribution.receive_date, Contribution.created_at)
    days, per_day = counts_per(when, [Contribution.status.in_(RECEIVED_STATUSES)], "day", 30, now)
    months, per_month = counts_per(when, [Contribution.status.in_(RECEIVED_STATUSES)], "month", 12, now)
    _, failed = counts_per(when, [Contribution.status == FAILED], "day", 30, now)
    _, errors = counts_per(StripeEvent.received_at, [StripeEvent.status == EV_ERROR], "day", 30, now)
    day_labels = [d.strftime("%d %b") for d in days]
    return {
        "per_day": ChartData(day_labels, [("Completed", per_day)]),
        "per_month": ChartData([m.strftime("%b %Y") for m in months], [("Completed", per_month)]),
        "failures": ChartData(day_labels, [("Failed contributions", failed), ("Events in error", errors)]),
    }
