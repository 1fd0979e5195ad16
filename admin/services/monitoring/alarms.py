"""The card-testing alarm: failed payments per processor in a sliding window.

Someone testing stolen card numbers through a donation form leaves a trail of failures. paydesk
counts, per processor, over the last ``CARD_TESTING_ALARM_WINDOW_MINUTES`` (default 60):

- ``intents``: tracked PaymentIntents whose payment failed in the window (``last_error_at``) and
  that have no failed contribution counted below (so one failed attempt counts once);
- ``charges``: failed one-off contributions received in the window (a failed renewal of a
  subscription is not card testing: many cards expire on billing day, so those are left out);
- ``signals``: card-testing signals (failed charges with no customer and no known intent);
- anything registered with :func:`register_source` (the donation form's refusals, say).

At or above ``CARD_TESTING_ALARM_THRESHOLD`` (default 20; 0 turns the alarm off) every staff page
shows a red banner linking to the failed intents, and a warning is logged once per episode (an
episode ends when the count falls below the threshold again). The check is cheap: a few indexed
range counts, cached per web process for ``CARD_TESTING_ALARM_CACHE_SECONDS`` (default 30).

:func:`failures_per_hour` gives the last 7 days hour by hour, for the dashboard's chart (drawn by
the shared chart module, ``admin/charts.py``, not here).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from flask import current_app, has_app_context
from sqlalchemy import Select, and_, func, select, update

from admin.dbutil import immediate, insert_ignore, rowcount
from admin.extensions import db
from admin.models import (
    FAILED,
    CardTestingEpisode,
    CardTestingSignal,
    Contribution,
    DonationForm,
    DonationRefusal,
    PaymentProcessor,
    StripePaymentIntent,
)
from admin.timeutil import utcnow

log = logging.getLogger(__name__)

# A source of failures: (since, until) -> a Select of (processor_id, when) rows, one per failure, or of
# (processor_id, when, n) rows where one row stands for n failures (refusals tallied together).
Source = Callable[[datetime, datetime], Select]
_SOURCES: dict[str, Source] = {}
_LABELS: dict[str, str] = {}  # what staff read for each source, in the banner


def register_source(name: str, source: Source, label: str | None = None) -> None:
    """Count another kind of failure towards the alarm (e.g. the donation form's refusals):
    ``source(since, until)`` returns a Select of ``(processor_id, when)`` (one row per failure), or of
    ``(processor_id, when, n)`` (one row for n), in ``[since, until)``; keep it on an indexed time column,
    it runs on every staff page. ``label`` is what the banner calls these failures ("refused donation-form
    requests"): staff read words, never ``name``."""
    _SOURCES[name] = source
    _LABELS[name] = label or name.replace("_", " ")


def _weighted(sub) -> tuple:
    """(processor column, time column, how many failures each row stands for) of a source's subquery."""
    cols = list(sub.c)
    return cols[0], cols[1], (cols[2] if len(cols) > 2 else None)


def _failed_charges(since: datetime, until: datetime) -> Select:
    c = Contribution
    return select(c.processor_id, c.receive_date).where(
        c.status == FAILED,
        c.receive_date >= since,
        c.receive_date < until,
        c.invoice_id.is_(None),
        c.recur_id.is_(None),
    )


def _failed_intents(since: datetime, until: datetime) -> Select:
    i, c = StripePaymentIntent, Contribution
    # Not correlated: worked out once, not once per intent (a planner may scan by status for each one).
    counted = select(c.payment_intent_id).where(
        c.status == FAILED, c.receive_date >= since, c.receive_date < until, c.payment_intent_id.is_not(None)
    )
    return select(i.processor_id, i.last_error_at).where(
        i.last_error_at >= since, i.last_error_at < until, i.stripe_intent_id.not_in(counted)
    )


def _signals(since: datetime, until: datetime) -> Select:
    s = CardTestingSignal
    return select(s.processor_id, s.created_at).where(s.created_at >= since, s.created_at < until)


def _form_refusals(since: datetime, until: datetime) -> Select:
    """Donation-form requests refused before reaching Stripe (replayed tokens, rate limits, honeypot,
    blocked addresses, ...); declines are counted already as failed intents and charges."""
    r, f = DonationRefusal, DonationForm
    return (
        select(f.processor_id, r.at, r.count)
        .join(f, f.id == r.form_id)
        .where(r.at >= since, r.at < until, r.reason != "payment_failed")
    )


register_source("intents", _failed_intents, "failed payment intents")
register_source("charges", _failed_charges, "failed one-off charges")
register_source("signals", _signals, "charges with no customer")
register_source("form_refusals", _form_refusals, "refused donation-form requests")


def settings() -> tuple[int, int]:
    """(threshold, window in minutes) from the configuration."""
    cfg = current_app.config
    return int(cfg.get("CARD_TESTING_ALARM_THRESHOLD", 20)), int(
        cfg.get("CARD_TESTING_ALARM_WINDOW_MINUTES", 60)
    )


def failure_counts(window_minutes: int, now: datetime | None = None) -> dict[int, dict[str, int]]:
    """Failures per processor and source in the last ``window_minutes``: {ppid: {source: n}}."""
    now = now or utcnow()
    since = now - timedelta(minutes=window_minutes)
    out: dict[int, dict[str, int]] = {}
    for name, source in _SOURCES.items():
        who, _when, weight = _weighted(source(since, now).subquery())
        how_many = func.coalesce(func.sum(weight), 0) if weight is not None else func.count()
        for ppid, n in db.session.execute(select(who, how_many).group_by(who)).all():
            if ppid is not None:
                out.setdefault(int(ppid), {})[name] = int(n)
    return out


@dataclass
class Alarm:
    processor_id: int
    processor_name: str
    count: int
    threshold: int
    window_minutes: int
    by_source: dict[str, int] = field(default_factory=dict)

    @property
    def window_words(self) -> str:
        return f"{self.window_minutes} minutes"

    @property
    def sources(self) -> list[tuple[str, int]]:
        """(what staff read, how many) for each kind of failure counted, largest first."""
        return sorted(
            ((_LABELS.get(k, k.replace("_", " ")), n) for k, n in self.by_source.items()),
            key=lambda item: (-item[1], item[0]),
        )


def current_alarms(now: datetime | None = None) -> list[Alarm]:
    """Processors whose failures in the window are at or above the threshold (none when it is 0)."""
    threshold, window = settings()
    if threshold <= 0:
        return []
    counts = failure_counts(window, now)
    hot = {ppid: c for ppid, c in counts.items() if sum(c.values()) >= threshold}
    if not hot:
        return []
    names = dict(
        db.session.execute(
            select(PaymentProcessor.id, PaymentProcessor.name).where(PaymentProcessor.id.in_(hot))
        ).all()
    )
    return [
        Alarm(ppid, names.get(ppid, f"processor {ppid}"), sum(c.values()), threshold, window, c)
        for ppid, c in sorted(hot.items())
    ]


def check(now: datetime | None = None) -> list[Alarm]:
    """Current alarms; opens an episode (and logs a warning, once) for a processor that has just gone
    over the threshold, and closes the episode of one that has fallen back below it. Commits only when
    an episode opens or closes."""
    alarms = current_alarms(now)
    threshold, window = settings()
    hot = {a.processor_id: a for a in alarms}
    open_eps = {
        e.processor_id: e
        for e in db.session.scalars(
            select(CardTestingEpisode).where(CardTestingEpisode.open_key.is_not(None))
        )
    }
    if not hot and not open_eps:
        return alarms
    now = now or utcnow()
    changed = False
    for ppid, a in hot.items():
        ep = open_eps.get(ppid)
        if ep is None:
            immediate()
            opened = insert_ignore(
                CardTestingEpisode,
                {
                    "processor_id": ppid,
                    "open_key": str(ppid),
                    "started_at": now,
                    "threshold": threshold,
                    "window_minutes": window,
                    "peak": a.count,
                },
                ["open_key"],
            )
            db.session.commit()
            if opened:  # another process may have opened it a moment ago: it logged the warning
                log.warning(
                    "possible card testing on %s (processor %s): %d failed payments in the last %d "
                    "minutes (threshold %d): %s",
                    a.processor_name,
                    ppid,
                    a.count,
                    window,
                    threshold,
                    ", ".join(f"{k} {v}" for k, v in sorted(a.by_source.items())),
                )
        elif a.count > ep.peak:
            ep.peak = a.count
            changed = True
    for ppid, ep in open_eps.items():
        if ppid not in hot:
            immediate()
            ended = rowcount(
                db.session.execute(
                    update(CardTestingEpisode)
                    .where(and_(CardTestingEpisode.id == ep.id, CardTestingEpisode.open_key.is_not(None)))
                    .values(open_key=None, ended_at=now)
                )
            )
            db.session.commit()
            if ended:
                log.info(
                    "card-testing alarm over on processor %s: below %d failed payments in %d minutes again "
                    "(peak %d)",
                    ppid,
                    threshold,
                    window,
                    ep.peak,
                )
    if changed:
        db.session.commit()
    return alarms


def banner_alarms() -> list[Alarm]:
    """What the staff pages' banner shows: the current alarms, worked out at most once per
    ``CARD_TESTING_ALARM_CACHE_SECONDS`` per web process (every page asks). Read-only: a page render
    never writes; the worker's ``check()`` every minute opens episodes and logs their warning."""
    if not has_app_context():
        return []
    cache = current_app.extensions.setdefault("paydesk_card_testing", {})
    ttl = float(current_app.config.get("CARD_TESTING_ALARM_CACHE_SECONDS", 30))
    hit = cache.get("alarms")
    if hit is not None and time.monotonic() - hit[0] < ttl:
        return hit[1]
    try:
        alarms = current_alarms()
    except Exception:  # noqa: BLE001 - a page must not fail because the alarm could not be worked out
        db.session.rollback()
        log.exception("could not work out the card-testing alarm")
        alarms = []
    cache["alarms"] = (time.monotonic(), alarms)
    return alarms


def failures_per_hour(
    days: int = 7, processor_id: int | None = None, now: datetime | None = None
) -> list[tuple[datetime, int]]:
    """Failed payments per hour over the last ``days`` (oldest first, every hour present, the current
    hour last): the data for the dashboard's small chart. Same sources as the alarm, each counted by the
    database per hour (``dashboard.counts_per``): one row per hour comes back, not one per failure. (One
    GROUP BY per source: over a UNION ALL of them SQLite sorts every failure and is 5 times slower.)"""
    from admin.services.monitoring.dashboard import counts_per, periods

    now = now or utcnow()
    starts = periods("hour", days * 24, now)
    total = [0] * len(starts)
    for source in _SOURCES.values():
        who, when, weight = _weighted(source(starts[0], starts[-1] + timedelta(hours=1)).subquery())
        _, counts = counts_per(
            when,
            [who == processor_id] if processor_id is not None else [],
            "hour",
            days * 24,
            now,
            weight=weight,
        )
        total = [a + b for a, b in zip(total, counts, strict=True)]
    return list(zip(starts, total, strict=True))
