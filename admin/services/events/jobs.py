"""The event jobs: bulk replay and bulk ignore, populate log/queue, retry all, cleanup.

Each is a generator run by :mod:`admin.services.core.jobs`: it resumes from ``ctx.cursor`` and
yields after every unit of work (see that module for the contract).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import timedelta

from sqlalchemy import func, select

from admin.errors import ServiceError
from admin.extensions import db
from admin.models import PaymentProcessor, StripeEvent
from admin.services.core import bulk
from admin.services.core.jobs import JobContext, job_kind
from admin.services.core.params import JobParams, Selection
from admin.services.events.ops import (
    check_reason,
    cleanup_query,
    delete_events,
    event_for_charge,
    mark_ignored,
    pull_event,
    replay,
    stripe_events,
    unrecorded_charges,
)
from admin.services.events.queries import EventFilter, local_query
from admin.stripe_event_types import event_type_problem
from admin.timeutil import parse_age


@dataclass
class ReplayEvents(Selection):
    """``events.replay``: the ticked events or a filter's; ``events bulk``'s confirmation asks for ``no_receipt``."""

    no_receipt: bool = field(default=False, metadata={"label": "Do not send receipts"})


@dataclass
class IgnoreEvents(Selection):
    reason: str = field(default="", metadata={"label": "Reason", "max_length": 500})


@dataclass
class Populate(JobParams):
    """``events.populate`` (page: Populate from Stripe; CLI: ``events populate-log|populate-queue``)."""

    types: list[str] = field(
        default_factory=lambda: ["invoice.payment_succeeded"],
        metadata={"label": "Types", "help": "Event type (repeatable, or 'all')."},
    )
    limit: int = field(
        default=0,
        metadata={
            "label": "At most",
            "min": 0,
            "max": 1_000_000,
            "help": "At most this many events (0: all Stripe still has, the last 30 days).",
        },
    )
    queue: bool = field(default=False, metadata={"label": "Queue them for processing"})

    def __post_init__(self) -> None:
        if "all" in self.types:
            self.types = []


@dataclass
class RetryAll(JobParams):
    """``events.retry_all`` (page: Retry all; CLI: ``events retry-all``)."""

    limit: int = field(
        default=25,
        metadata={"label": "At most", "min": 1, "max": 10_000, "help": "At most this many payments."},
    )
    days: int = field(
        default=30,
        metadata={
            "label": "Days back",
            "min": 1,
            "max": 365,
            "help": "Look at Stripe's charges of the last N days.",
        },
    )


@dataclass
class Cleanup(JobParams):
    """``events.cleanup`` (page: Clean up; CLI: ``events cleanup``)."""

    older_than: str = field(
        default="90 days", metadata={"label": "Older than", "help": 'Age, e.g. "30 days", "3 months".'}
    )
    include_errors: bool = field(
        default=False, metadata={"label": "Errors too", "help": "Delete events in error too."}
    )
    ppid: int | None = field(default=None, metadata={"label": "Processor"})

    def check(self) -> None:
        cleanup_age(self.older_than)


def _selection(params: dict):
    """The stored events a bulk job acts on: the ids chosen on the page, or everything matching
    a filter (as it matches when each chunk is read)."""
    return bulk.selection(
        params, StripeEvent, lambda criteria: local_query(EventFilter.parse_or_raise(criteria))
    )


def selection_count(params: dict) -> int:
    return bulk.count(_selection(params), StripeEvent)


@job_kind(
    "events.replay",
    params=ReplayEvents,
    title=lambda p: bulk.describe(p, "Replay", "event") + (" (no receipts)" if p.get("no_receipt") else ""),
)
def replay_events(ctx: JobContext):
    procs: dict[int, PaymentProcessor] = {}
    for row in bulk.each(ctx, _selection(ctx.params), StripeEvent):
        proc = procs.get(row.processor_id) or db.session.get_one(PaymentProcessor, row.processor_id)
        procs[row.processor_id] = proc
        try:
            res = replay(proc, row=row, no_receipt=bool(ctx.params.get("no_receipt")))
            ctx.count(res.status)
            if not res.ok:
                ctx.note(f"{row.event_id} ({row.type}): {res.message}")
        except ServiceError as err:
            ctx.count("skipped")
            ctx.note(f"{row.event_id}: {err.message}")
        bulk.done(ctx, row)
        yield


@job_kind(
    "events.ignore",
    params=IgnoreEvents,
    title=lambda p: bulk.describe(p, "Mark ignored", "event"),
    check=lambda p: check_reason(p.get("reason")),
)
def ignore_events(ctx: JobContext):
    reason = ctx.params.get("reason") or ""
    for row in bulk.each(ctx, _selection(ctx.params), StripeEvent):
        try:
            mark_ignored(row, reason)
            ctx.count("ignored")
        except ServiceError as err:
            ctx.count("skipped")
            ctx.note(f"{row.event_id}: {err.message}")
        bulk.done(ctx, row)
        yield


def check_event_types(params: dict) -> None:
    """Populate's ``types``: each a Stripe event type or a group of them (``invoice.*``), or none for all."""
    for t in params.get("types") or []:
        problem = event_type_problem(str(t))
        if problem:
            raise ServiceError(problem, field="types")


@job_kind(
    "events.populate",
    params=Populate,
    check=check_event_types,
    title=lambda p: (
        f"Populate {'queue' if p.get('queue') else 'log'} from Stripe: "
        f"{', '.join(p.get('types') or []) or 'all types'}"
        + (f", at most {p['limit']}" if p.get("limit") else ", last 30 days")
    ),
)
def populate(ctx: JobContext):
    """Copy Stripe's past events into the log (CiviCRM's Populatelog), or also queue them
    for processing (Populatewebhookqueue); an event already stored is not stored twice."""
    proc = ctx.require_processor()
    limit = int(ctx.params.get("limit") or 0)
    if limit:
        ctx.total = limit
    if limit and ctx.done >= limit:
        return
    for event in stripe_events(
        proc, list(ctx.params.get("types") or []), starting_after=ctx.cursor.get("starting_after")
    ):
        ctx.count(pull_event(proc, event, queue=bool(ctx.params.get("queue"))))
        ctx.cursor["starting_after"] = event["id"]
        ctx.done += 1
        yield
        if limit and ctx.done >= limit:
            return


@job_kind(
    "events.retry_all",
    params=RetryAll,
    title=lambda p: (
        f"Retry all: payments Stripe has and paydesk "
        f"has not (up to {RetryAll.of(p).limit}, last "
        f"{RetryAll.of(p).days} days)"
    ),
)
def retry_all(ctx: JobContext):
    """Payments completed in Stripe but not in paydesk: replay the event that records each
    (CiviCRM's Retryall), or import the charge when paydesk has no such event."""
    from admin.services.records.imports import import_charge

    proc = ctx.require_processor()
    p = RetryAll.of(ctx.params)
    limit = p.limit
    ctx.total = limit
    if ctx.done >= limit:
        return
    for charge in unrecorded_charges(proc, days=p.days, starting_after=ctx.cursor.get("starting_after")):
        row = event_for_charge(proc, charge)
        try:
            if row is not None:
                res = replay(proc, row=row)
                ctx.count("replayed" if res.ok else "failed")
                ctx.note(
                    f"{charge['id']}: replayed {row.event_id} ({row.type}): {res.status}"
                    + (f": {res.message}" if not res.ok else "")
                )
            else:
                import_charge(proc, charge["id"])
                ctx.count("imported")
                ctx.note(f"{charge['id']}: no stored event; imported the charge")
        except ServiceError as err:
            ctx.count("failed")
            ctx.note(f"{charge['id']}: {err.message}")
        ctx.cursor["starting_after"] = charge["id"]
        ctx.done += 1
        yield
        if ctx.done >= limit:
            return
    ctx.total = ctx.done


def cleanup_age(text: str) -> timedelta:
    try:
        age = parse_age(text)
    except ValueError as err:
        raise ServiceError(str(err), field="older_than") from None
    if age < timedelta(days=1):
        raise ServiceError("keep at least a day of events: use an age of 1 day or more", field="older_than")
    return age


@job_kind(
    "events.cleanup",
    params=Cleanup,
    title=lambda p: (
        f"Clean up events older than {p.get('older_than')}"
        + (" (errors too)" if p.get("include_errors") else "")
    ),
    role="admin",
)
def cleanup(ctx: JobContext):
    """Delete processed (success, ignored, logged) events older than an age; errors only when asked."""
    q = cleanup_query(
        ctx.params.get("ppid"), cleanup_age(ctx.params["older_than"]), bool(ctx.params.get("include_errors"))
    )
    if ctx.total is None:
        ctx.total = int(db.session.scalar(select(func.count()).select_from(q.subquery())) or 0)
    while True:
        ids = list(db.session.scalars(q.order_by(StripeEvent.id).limit(500)))
        if not ids:
            return
        ctx.count("deleted", delete_events(ids))
        ctx.done += len(ids)
        yield
