"""What ``/reconcile`` and ``flask reconcile`` compare: a processor, a period and the objects, and which
of the compared rows to show."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import ClassVar

from admin.listing import Filter
from admin.timeutil import utcnow

OBJECTS = ("charge", "refund", "invoice")
PROBLEMS = ("missing", "amount", "status", "absent")
PROBLEM_LABELS = {
    "missing": "missing in paydesk",
    "amount": "amount differs",
    "status": "status differs",
    "absent": "not in Stripe",
}
DEFAULT_DAYS = 7
MAX_DAYS = 366


@dataclass
class ReconcileFilter(Filter):
    """``/reconcile?ppid=1&days=7&object=charge&problem=missing``, also ``reconcile --ppid 1 --days 7``.
    The period is ``since``..``until`` (whole days, ``until`` inclusive), or the last ``days`` days."""

    LABELS: ClassVar[dict[str, str]] = {"days": "Last days", "object": "Objects", "problem": "Differences"}

    ppid: int | None = None
    days: int = DEFAULT_DAYS
    since: datetime | None = None
    until: datetime | None = field(default=None, metadata={"end": True})
    object: list[str] = field(default_factory=list, metadata={"choices": OBJECTS})
    problem: list[str] = field(default_factory=list, metadata={"choices": PROBLEMS})
    matching: bool = False  # show the rows that are in step too

    def check(self, errors: dict[str, str]) -> None:
        if not 1 <= self.days <= MAX_DAYS:
            errors["days"] = f"must be from 1 to {MAX_DAYS}"
            self.days = DEFAULT_DAYS
        if self.since and self.until and self.since >= self.until:
            errors["until"] = "must be after the start date"
            self.until = None
        since, until = self.window()
        if until - since > timedelta(days=MAX_DAYS):
            errors["since"] = f"a period of at most {MAX_DAYS} days, please"
            self.since = None

    def window(self, now: datetime | None = None) -> tuple[datetime, datetime]:
        until = self.until or (now or utcnow()).replace(microsecond=0) + timedelta(seconds=1)  # up to now
        return self.since or until - timedelta(days=self.days), until

    @property
    def objects(self) -> str:
        """The objects compared, as a scan stores them: "charge,invoice,refund"."""
        return ",".join(sorted(self.object or OBJECTS))

    @property
    def period(self) -> str:
        """The period as asked: "the last 7 days" is the same period a minute later (a scan's identity)."""
        parts = [f"since={self.since.isoformat()}"] if self.since else [f"days={self.days}"]
        if self.until:
            parts.append(f"until={self.until.isoformat()}")
        return ";".join(parts)

    def shows(self, problem: str | None) -> bool:
        """Whether a row with this difference (None: in step) is shown."""
        return bool(problem or self.matching) and (not self.problem or problem in self.problem)
