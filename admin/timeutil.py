"""Time helpers. paydesk stores naive UTC datetimes everywhere."""

import re
from datetime import UTC, datetime, timedelta
from typing import overload


def utcnow() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)


@overload
def from_unix(ts: int | float) -> datetime: ...
@overload
def from_unix(ts: int | float | None) -> datetime | None: ...
def from_unix(ts: int | float | None) -> datetime | None:
    if ts is None:
        return None
    return datetime.fromtimestamp(int(ts), UTC).replace(tzinfo=None)


def to_unix(dt: datetime) -> int:
    return int(dt.replace(tzinfo=UTC).timestamp())


_UNITS = {
    "second": 1,
    "minute": 60,
    "hour": 3600,
    "day": 86400,
    "week": 7 * 86400,
    "month": 30 * 86400,
    "year": 365 * 86400,
}


MAX_AGE_SECONDS = 100 * _UNITS["year"]  # an age further back than this is a typo, not a filter


def parse_age(text: str) -> timedelta:
    """'1 hour', '90 minutes', '2d' -> timedelta. A negative age ('-5 days') is refused: "older than -5 days"
    would mean "newer than", which is never what was meant."""
    if re.match(r"\s*-", text):
        raise ValueError(f"{text.strip()[:40]!r} is negative: give an age such as '1 hour' or '3 months'")
    m = re.fullmatch(r"\s*(\d+)\s*([a-z]+?)s?\s*", text.lower())
    if not m:
        raise ValueError(f"cannot read {text[:40]!r} as an age such as '1 hour' or '3 months'")
    n, unit = int(m.group(1)), m.group(2)
    short = {
        "s": "second",
        "sec": "second",
        "min": "minute",
        "m": "minute",
        "h": "hour",
        "hr": "hour",
        "d": "day",
        "w": "week",
        "mo": "month",
        "mon": "month",
        "y": "year",
        "yr": "year",
    }
    unit = short.get(unit, unit)
    if unit not in _UNITS:
        raise ValueError(f"unknown unit in {text[:40]!r}")
    if n * _UNITS[unit] > MAX_AGE_SECONDS:
        raise ValueError(f"{text[:40]!r} is longer than paydesk counts back (at most 100 years)")
    return timedelta(seconds=n * _UNITS[unit])


def format_age(delta: timedelta | None) -> str:
    """How old something is, in one or two units: '45 s', '12 min', '3 h 5 min', '2 d 4 h', '95 d'."""
    if delta is None:
        return ""
    s = max(0, int(delta.total_seconds()))
    if s < 60:
        return f"{s} s"
    if s < 3600:
        return f"{s // 60} min"
    if s < 86400:
        h, m = divmod(s // 60, 60)
        return f"{h} h" + (f" {m} min" if m else "")
    d, h = divmod(s // 3600, 24)
    return f"{d} d" + (f" {h} h" if h and d < 10 else "")
