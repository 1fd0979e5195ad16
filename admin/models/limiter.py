"""Counters for Flask-Limiter when no Redis is configured: shared by every process through the database."""

from __future__ import annotations

from sqlalchemy import Float, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from ..extensions import db


class LimiterCounter(db.Model):
    """A fixed-window hit counter: ``key`` -> ``count`` until ``expires_at`` (unix time)."""

    __tablename__ = "limiter_counter"
    key: Mapped[str] = mapped_column(String(255), primary_key=True)
    count: Mapped[int] = mapped_column(Integer, default=0)
    expires_at: Mapped[float] = mapped_column(Float, index=True)
