"""Fixed-window counters in the ``rate_limit`` table.

A key (``"login-ip:203.0.113.9"``, ``"donate-card:<fingerprint>"``, ...) counts hits in a
window of ``window`` seconds; reaching ``limit`` blocks the key for ``block`` seconds.
``blocked_for(key)`` says how long a block has left, ``reset(key)`` forgets a key, and
``safe_key(prefix, *parts)`` builds a key that always fits the column.
Callers commit (``hit`` leaves the change in the session). On PostgreSQL the
row is locked while it is updated; SQLite serialises writers anyway. Rows live in the
database, so every web process (gunicorn workers, several machines) shares the counts.
"""

from __future__ import annotations

import math
from datetime import datetime, timedelta

from sqlalchemy import bindparam, delete, or_, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm.util import identity_key

from admin.dbutil import rowcount
from admin.extensions import db
from admin.models import RateLimit
from admin.timeutil import utcnow

_BLOCKED_UNTIL = select(RateLimit.__table__.c.blocked_until).where(
    RateLimit.__table__.c.key == bindparam("key")
)


def blocked_for(key: str, now: datetime | None = None) -> int:
    """Seconds left on a block of ``key`` (0 when not blocked). The row this session holds already (as
    :func:`hit` left it), else one column read (a donation payment asks this of every request: no ORM
    object is loaded for it)."""
    session = db.session()
    row = session.identity_map.get(identity_key(RateLimit, key))
    if row is not None:
        until = row.blocked_until
    else:
        until = session.connection().execute(_BLOCKED_UNTIL, {"key": key}).scalar()
    return _seconds_left(until, now or utcnow())


def _seconds_left(until: datetime | None, now: datetime) -> int:
    if until is None or until <= now:
        return 0
    return max(1, math.ceil((until - now).total_seconds()))


def hit(key: str, *, limit: int, window: int, block: int, now: datetime | None = None) -> int:
    """Count one hit; returns seconds the key is now blocked for (0 when still under ``limit``)."""
    now = now or utcnow()
    row = db.session.get(RateLimit, key, with_for_update=True)
    if row is None:
        try:  # two first hits at once: one insert wins, the other reads its row
            with db.session.begin_nested():
                db.session.add(RateLimit(key=key, count=0, window_start=now))
        except IntegrityError:
            pass
        row = db.session.get_one(RateLimit, key, with_for_update=True)
    if row.window_start is None or row.window_start + timedelta(seconds=window) <= now:
        row.window_start = now
        row.count = 0
    if row.blocked_until is not None and row.blocked_until <= now:
        row.blocked_until = None
    row.count = (row.count or 0) + 1
    if row.count >= limit:
        row.blocked_until = now + timedelta(seconds=block)
        row.count = 0
        row.window_start = now
    return _seconds_left(row.blocked_until, now)


def reset(key: str) -> None:
    """Forget ``key``'s count and any block on it (e.g. after a successful sign-in). Callers commit."""
    row = db.session.get(RateLimit, key, with_for_update=True)
    if row is not None:
        db.session.delete(row)


def safe_key(prefix: str, *parts: str) -> str:
    """``prefix:part|part`` if it fits the key column (255), else ``prefix:#<sha256>``: attacker-chosen
    parts (an email typed into a form, a forwarded address) can never make a key too long."""
    import hashlib

    joined = "|".join(parts)
    key = f"{prefix}:{joined}"
    if len(key) <= 200 and all(31 < ord(c) < 127 for c in joined):
        return key
    return f"{prefix}:#{hashlib.sha256(joined.encode('utf-8', 'replace')).hexdigest()}"


def prune(older_than: timedelta, now: datetime | None = None) -> int:
    """Delete counters whose window started more than ``older_than`` ago and that block nothing now: a
    later hit would start them again anyway (the worker, every few minutes). Commits."""
    now = now or utcnow()
    gone = rowcount(
        db.session.execute(
            delete(RateLimit).where(
                RateLimit.window_start < now - older_than,
                or_(RateLimit.blocked_until.is_(None), RateLimit.blocked_until <= now),
            )
        )
    )
    db.session.commit()
    return gone or 0
