"""The ``reconcile.scan`` job: Stripe's charges, refunds and paid invoices of a period, each compared with
paydesk's record, kept as a ``ReconcileScan`` that the page shows, the CLI prints and "fix all" works
through.

A scan reads Stripe at length (a page of 100 objects per request, thousands in a busy month), so it is
a job, never a web request: one Stripe page per unit of work, the compared rows appended to the kept
scan as they come, the position (object, phase, Stripe's ``starting_after``) in the job's cursor. A
killed scan resumes where it was; an identical scan (same processor, objects and period as asked) is
not started twice, and a user runs one scan at a time.

For each kind of object: first Stripe's list for the period (Stripe filters charges by date; a server
that cannot, such as localstripe, is read newest first until the pages are older than the period), then
what paydesk counts as paid in the period and the list did not show, asked of Stripe one by one (so an
object that Stripe dates differently is compared, not reported).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import delete, select

from admin.dbutil import immediate
from admin.errors import ServiceError
from admin.extensions import db
from admin.listing import Page, sequence_page
from admin.models import PaymentProcessor, ReconcileScan
from admin.models.jobs import JOB_ACTIVE, Job
from admin.services.core import jobs
from admin.services.core.jobs import JobContext, job_kind
from admin.services.core.stripe_reader import PAGE, StripeReader
from admin.services.reconcile.compare import (
    SIDES,
    Row,
    compare_listed,
    compare_one,
    retrieve,
    row_key,
)
from admin.services.reconcile.filter import MAX_DAYS, OBJECTS, PROBLEMS, ReconcileFilter
from admin.stripe_gateway import GatewayError
from admin.timeutil import to_unix, utcnow

KIND = "reconcile.scan"
MAX_OBJECTS = 5000  # per kind and scan: a longer period is refused with a message, not half-shown
CHECK_CHUNK = 25  # paydesk's records asked of Stripe one by one, per unit of work
SCAN_KEEP = timedelta(days=30)  # older scans are deleted, unless an active fix-all job works from one


# -- what a scan is asked for ------------------------------------------------------------------


@dataclass(frozen=True)
class ScanParams:
    """A scan's parameters, shared by the page's "Compare with Stripe" button and ``flask reconcile``:
    the objects and the period as asked (the last ``days`` days, or ``since``..``until``)."""

    object: tuple[str, ...] = OBJECTS
    days: int = 7
    since: datetime | None = None
    until: datetime | None = None

    @classmethod
    def of(cls, flt: ReconcileFilter) -> ScanParams:
        return cls(tuple(sorted(flt.object or OBJECTS)), flt.days, flt.since, flt.until)

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"object": list(self.object), "days": self.days}
        for name in ("since", "until"):
            if getattr(self, name):
                out[name] = getattr(self, name).isoformat(timespec="seconds")
        return out

    @classmethod
    def from_dict(cls, params: dict[str, Any]) -> ScanParams:
        """The parameters as a job stores them; a ``ServiceError`` when they cannot be a scan."""
        try:
            objects = tuple(sorted(params.get("object") or OBJECTS))
            days = int(params.get("days") or 7)
            since, until = (
                datetime.fromisoformat(params[k]) if params.get(k) else None for k in ("since", "until")
            )
        except (TypeError, ValueError):
            raise ServiceError("these scan parameters are damaged; start the scan again") from None
        if set(objects) - set(OBJECTS) or not 1 <= days <= MAX_DAYS:
            raise ServiceError("these scan parameters are damaged; start the scan again")
        return cls(objects, days, since, until)

    def filter(self) -> ReconcileFilter:
        return ReconcileFilter(days=self.days, since=self.since, until=self.until, object=list(self.object))


def _check(params: dict[str, Any]) -> None:
    flt = ScanParams.from_dict(params).filter()
    errors: dict[str, str] = {}
    flt.check(errors)
    if errors:
        name, message = next(iter(errors.items()))
        raise ServiceError(f"{ReconcileFilter.label(name)}: {message}", field=name)


def _title(params: dict[str, Any]) -> str:
    try:
        p = ScanParams.from_dict(params)
    except ServiceError:
        return "Compare with Stripe"
    what = (
        "charges, refunds and invoices"
        if p.object == OBJECTS or set(p.object) == set(OBJECTS)
        else ", ".join(f"{o}s" for o in p.object)
    )
    if p.since:
        span = f"{p.since:%Y-%m-%d} to {p.until:%Y-%m-%d}" if p.until else f"since {p.since:%Y-%m-%d}"
    else:
        span = f"the last {p.days} day{'s' if p.days != 1 else ''}" + (
            f" to {p.until:%Y-%m-%d}" if p.until else ""
        )
    return f"Compare {what} with Stripe, {span}"


# -- a kept scan ---------------------------------------------------------------------------------


@dataclass
class Scan:
    processor: PaymentProcessor
    since: datetime
    until: datetime
    rows: list[Row]  # every compared row (in step too) of the chosen objects, newest first
    taken_at: datetime = field(default_factory=utcnow)
    id: int | None = None
    job_id: int | None = None

    def counts(self) -> dict[str, int]:
        """Rows per problem (and ``in step``), whatever the filter's problem choice."""
        counts = dict.fromkeys((*PROBLEMS, "in step"), 0)
        counts.update(Counter(r.problem or "in step" for r in self.rows))
        return counts

    def shown(self, flt: ReconcileFilter) -> list[Row]:
        return [r for r in self.rows if flt.shows(r.problem)]

    @property
    def differences(self) -> list[Row]:
        return [r for r in self.rows if r.problem]

    def row(self, obj: str, stripe_id: str) -> Row | None:
        return next((r for r in self.rows if (r.object, r.stripe_id) == (obj, stripe_id)), None)


def page(rows: list[Row], flt: ReconcileFilter) -> Page:
    """A keyset page of rows (newest first), like every list page."""
    return sequence_page(rows, row_key, flt)


def _stored(r: Row) -> dict[str, Any]:
    return {**asdict(r), "created": r.created.isoformat() if r.created else None}


def _row(data: dict[str, Any]) -> Row:
    return Row(
        **{**data, "created": datetime.fromisoformat(data["created"]) if data.get("created") else None}
    )


def loaded(proc: PaymentProcessor, kept: ReconcileScan) -> Scan:
    return Scan(
        proc,
        kept.since,
        kept.until,
        [_row(r) for r in kept.rows or []],
        taken_at=kept.taken_at,
        id=kept.id,
        job_id=kept.job_id,
    )


def latest(proc: PaymentProcessor, flt: ReconcileFilter) -> Scan | None:
    """The newest finished scan of the filter's processor, objects and period (as asked), whatever its age;
    None when there is none. Stripe is not asked."""
    kept = db.session.scalars(
        select(ReconcileScan)
        .where(
            ReconcileScan.processor_id == proc.id,
            ReconcileScan.objects == flt.objects,
            ReconcileScan.period == flt.period,
            ReconcileScan.finished_at.is_not(None),
        )
        .order_by(ReconcileScan.finished_at.desc(), ReconcileScan.id.desc())
        .limit(1)
    ).first()
    return loaded(proc, kept) if kept is not None else None


def get(proc: PaymentProcessor, scan_id: Any) -> Scan | None:
    """A finished scan of this processor by id (what a confirmation names); None when it is gone."""
    kept = db.session.get(ReconcileScan, scan_id) if isinstance(scan_id, int) else None
    if kept is None or kept.processor_id != proc.id or kept.finished_at is None:
        return None
    return loaded(proc, kept)


def running(proc: PaymentProcessor, flt: ReconcileFilter) -> Job | None:
    """The scan job of the filter's processor, objects and period that has not ended yet, if any."""
    return jobs.active(KIND, ScanParams.of(flt).as_dict(), processor_id=proc.id)


def start(proc: PaymentProcessor, flt: ReconcileFilter) -> jobs.Started:
    """Queue a scan of the filter's objects and period (or return the identical one running). A
    ``ServiceError`` when the user runs another scan already."""
    return jobs.start(KIND, ScanParams.of(flt).as_dict(), processor_id=proc.id)


def update_row(proc: PaymentProcessor, row: Row) -> None:
    """A row was fixed: every finished scan of the processor that has it shows it as it is now (the page
    and "fix all" need not ask Stripe again). Commits."""
    immediate()
    for kept in db.session.scalars(
        select(ReconcileScan).where(
            ReconcileScan.processor_id == proc.id, ReconcileScan.finished_at.is_not(None)
        )
    ):
        rows = kept.rows or []
        at = next(
            (
                i
                for i, r in enumerate(rows)
                if (r.get("object"), r.get("stripe_id")) == (row.object, row.stripe_id)
            ),
            None,
        )
        if at is not None:
            kept.rows = [*rows[:at], _stored(row), *rows[at + 1 :]]
    db.session.commit()


def _in_use() -> list[int]:
    """The scans active fix-all jobs work from (their cursors name them)."""
    cursors = db.session.scalars(
        select(Job.cursor).where(Job.kind == "reconcile.fix_all", Job.status.in_(JOB_ACTIVE))
    )
    return [int(c["scan"]) for c in cursors if isinstance(c, dict) and isinstance(c.get("scan"), int)]


def _prune(kept: ReconcileScan) -> None:
    """Older finished scans of the same processor, objects and period, and scans past ``SCAN_KEEP``, go
    (except those an active fix-all job works from)."""
    in_use = _in_use() or [0]
    db.session.execute(
        delete(ReconcileScan).where(
            ReconcileScan.processor_id == kept.processor_id,
            ReconcileScan.objects == kept.objects,
            ReconcileScan.period == kept.period,
            ReconcileScan.finished_at.is_not(None),
            ReconcileScan.id != kept.id,
            ReconcileScan.id.not_in(in_use),
        )
    )
    db.session.execute(
        delete(ReconcileScan).where(
            ReconcileScan.taken_at < utcnow() - SCAN_KEEP, ReconcileScan.id.not_in(in_use)
        )
    )


# -- taking a scan -------------------------------------------------------------------------------


class Scanner:
    """One scan, a unit at a time. ``cursor`` (a plain dict: the job's) says where it is; :meth:`step`
    does one unit (one Stripe page, or a few records asked of Stripe) and returns False once the scan
    is finished and kept."""

    def __init__(
        self, proc: PaymentProcessor, params: ScanParams, cursor: dict[str, Any], job_id: int | None
    ):
        self.proc, self.params, self.cursor, self.job_id = proc, params, cursor, job_id
        self.reader = StripeReader(proc)
        self.compared = 0  # objects compared by this process's units

    @property
    def kept(self) -> ReconcileScan | None:
        scan_id = self.cursor.get("scan")
        return db.session.get(ReconcileScan, scan_id) if isinstance(scan_id, int) else None

    def step(self) -> bool:
        kept = self.kept
        if kept is None:
            self._begin()
            return True
        if kept.finished_at is not None:
            return False
        objects = self.params.object
        at = int(self.cursor.get("side", 0))
        if at >= len(objects):
            self._finish(kept)
            return False
        side = SIDES[objects[at]]
        listing = self.cursor.get("phase", "list") == "list"
        rows, done = (self._list if listing else self._check)(side, kept)
        immediate()
        have = {
            (r.get("object"), r.get("stripe_id")) for r in kept.rows or []
        }  # a unit run again adds nothing
        kept.rows = [*(kept.rows or []), *(_stored(r) for r in rows if (r.object, r.stripe_id) not in have)]
        db.session.commit()
        if done and listing:
            self.cursor.update(phase="check", last=0)
        elif done:
            self.cursor.update(side=at + 1, phase="list", after=None, last=0, listed=0, server_filter=True)
        return True

    def _begin(self) -> None:
        flt = self.params.filter()
        since, until = flt.window()
        immediate()
        kept = ReconcileScan(
            processor_id=self.proc.id,
            objects=flt.objects,
            period=flt.period,
            since=since,
            until=until,
            taken_at=utcnow(),
            rows=[],
            job_id=self.job_id,
            finished_at=None,
        )
        db.session.add(kept)
        db.session.commit()
        self.cursor.clear()
        self.cursor.update(
            scan=kept.id, side=0, phase="list", after=None, last=0, listed=0, server_filter=True
        )

    def _list(self, side, kept: ReconcileScan) -> tuple[list[Row], bool]:
        """One page of Stripe's list (newest first): the objects of the period in it, compared."""
        lo, hi = to_unix(kept.since), to_unix(kept.until)
        params: dict[str, Any] = {"limit": PAGE}
        if self.cursor.get("after"):
            params["starting_after"] = self.cursor["after"]
        use_filter = side.server_filter and self.cursor.get("server_filter", True)
        try:
            data, more = self.reader.list_page(
                side.resource, **params, **({"created": {"gte": lo, "lt": hi}} if use_filter else {})
            )
        except GatewayError as err:
            if not use_filter or err.http_status != 400:
                raise
            self.cursor["server_filter"] = False  # this server cannot filter by date: read it newest first
            data, more = self.reader.list_page(side.resource, **params)
        data = [o for o in data if isinstance(o, dict) and o.get("id")]
        for o in data:
            self.reader.remember(side.resource, o)
        listed = [o for o in data if lo <= int(o.get("created") or 0) < hi]
        self.cursor["listed"] = int(self.cursor.get("listed", 0)) + len(listed)
        if self.cursor["listed"] > MAX_OBJECTS:
            raise ServiceError(
                f"Stripe has more than {MAX_OBJECTS:,} {side.resource} in this period: choose a shorter one"
            )
        self.compared += len(listed)
        if data:
            self.cursor["after"] = data[-1]["id"]
        older = bool(data) and all(int(o.get("created") or 0) < lo for o in data)
        return compare_listed(side, self.proc, listed), not more or not data or older

    def _check(self, side, kept: ReconcileScan) -> tuple[list[Row], bool]:
        """A few of paydesk's records of the period that Stripe's list did not show, asked of Stripe."""
        seen = {r["stripe_id"] for r in kept.rows or [] if r.get("object") == side.object}
        model = side.model
        records = list(
            db.session.scalars(
                select(model)
                .where(
                    model.processor_id == self.proc.id,
                    *side.counted_where(),
                    side.date_column >= kept.since,
                    side.date_column < kept.until,
                    model.id > int(self.cursor.get("last", 0)),
                )
                .order_by(model.id)
                .limit(CHECK_CHUNK)
            )
        )
        rows: list[Row] = []
        for rec in records:
            key = getattr(rec, side.key_column.key)
            if key and key not in seen:
                row = compare_one(side, retrieve(self.reader, side, key), rec, key)
                if row is not None:
                    rows.append(row)
                self.compared += 1
        if records:
            self.cursor["last"] = records[-1].id
        return rows, len(records) < CHECK_CHUNK

    def _finish(self, kept: ReconcileScan) -> None:
        immediate()
        kept.rows = sorted(kept.rows or [], key=lambda r: row_key(_row(r)), reverse=True)
        kept.finished_at = utcnow()
        _prune(kept)
        db.session.commit()


def take(proc: PaymentProcessor, flt: ReconcileFilter) -> Scan:
    """A scan taken here and now, to its end (for a job that needs one and has none: "fix all" whose
    scan is gone). Pages never call this: they start the job."""
    scanner = Scanner(proc, ScanParams.of(flt), {}, None)
    while scanner.step():
        pass
    kept = scanner.kept
    assert kept is not None, "the first step begins the scan"
    return loaded(proc, kept)


@job_kind(KIND, title=_title, check=_check, one_per_user=True)
def scan_job(ctx: JobContext):
    """Compare Stripe and paydesk for a period: one Stripe page (or a few records) per unit."""
    proc = ctx.require_processor()
    scanner = Scanner(proc, ScanParams.from_dict(ctx.params), ctx.cursor, ctx.job_id)
    while scanner.step():
        ctx.done += scanner.compared
        scanner.compared = 0
        yield
    kept = scanner.kept
    rows = (kept.rows or []) if kept is not None else []
    differ = sum(1 for r in rows if r.get("problem"))
    ctx.total = ctx.done
    ctx.result["scan"] = kept.id if kept is not None else None
    ctx.result["counts"] = {"compared": len(rows), "differ": differ}
