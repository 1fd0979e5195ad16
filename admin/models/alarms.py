"""Card-testing alarm episodes: when failed payments on a processor went above the threshold, and when
they fell back below it (see ``admin.services.monitoring.alarms``)."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import DateTime, ForeignKey, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from admin.extensions import Model
from admin.timeutil import utcnow


class CardTestingEpisode(Model):
    """One stretch of time during which a processor's failures stayed at or above the threshold.

    ``open_key`` is the processor id while the episode is open and NULL once it has ended: the
    unique constraint keeps several web processes from opening (and logging) the same episode twice.
    """

    __tablename__ = "card_testing_episode"
    id: Mapped[int] = mapped_column(primary_key=True)
    processor_id: Mapped[int] = mapped_column(ForeignKey("payment_processor.id"), index=True)
    open_key: Mapped[str | None] = mapped_column(String(32), unique=True)
    started_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    ended_at: Mapped[datetime | None] = mapped_column(DateTime)
    threshold: Mapped[int] = mapped_column(Integer)
    window_minutes: Mapped[int] = mapped_column(Integer)
    peak: Mapped[int] = mapped_column(Integer, default=0)  # the most failures counted in one window
