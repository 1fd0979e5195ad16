"""Counters for Flask-Limiter when no Redis is configured: shared by every process through the database."""

from __future__ import annotations

from sqlalchemy import DDL, Float, Integer, String, event
from sqlalchemy.orm import Mapped, mapped_column

from admin.extensions import Model


class LimiterCounter(Model):
    """A fixed-window hit counter: ``key`` -> ``count`` until ``expires_at`` (unix time).

    On PostgreSQL the table is UNLOGGED: no WAL, so counting a page view never waits for a disk
    flush; a crash empties it, which rate limits can afford.
    """

    __tablename__ = "limiter_counter"
    key: Mapped[str] = mapped_column(String(255), primary_key=True)
    count: Mapped[int] = mapped_column(Integer, default=0)
    expires_at: Mapped[float] = mapped_column(Float, index=True)


# The migration does the same (migrations/versions/..._donation_forms.py).
event.listen(
    LimiterCounter.__table__,
    "after_create",
    DDL("ALTER TABLE limiter_counter SET UNLOGGED").execute_if(dialect="postgresql"),
)
