"""The intent jobs: bulk cancel, CiviCRM's Job.process_stripe, and learning of intents from Stripe.

Each is a generator run by :mod:`admin.services.core.jobs` (see that module for the contract): it resumes
from ``ctx.cursor`` and yields after every unit of work. A cancel in a job carries the idempotency key
``paydesk-cancel-<intent>-job<id>``, so a unit run again after a crash asks Stripe once.

``intents.process_stripe`` is safe to start from cron on several hosts at once. Its parameters carry
the period it is for (the start time rounded to the nearest ``--period``, so hosts whose clocks differ
by less than half a period agree on it). Hosts that start it while it runs get the same job (the job
mechanism's identical-job dedupe on kind + parameters) and leave it to whoever runs it; a host that
starts it after it has finished gets a new job that sees the finished one for the same period and
stops without doing anything. One run per period does the work.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlalchemy import and_, func, or_, select

from admin.errors import ServiceError
from admin.extensions import db
from admin.models import Contribution, PaymentProcessor, StripePaymentIntent
from admin.models.jobs import JOB_DONE, Job
from admin.services.core import bulk
from admin.services.core.jobs import JobContext, job_kind
from admin.services.core.params import JobParams, Selection
from admin.services.intents.ops import (
    FAILED,
    cancel_intent,
    delete_intent_records,
    learn_intent,
    old_final_query,
    stripe_intents,
)
from admin.services.intents.queries import GONE, OPEN, STAFF_SOURCE, IntentFilter, age_of, intents_query
from admin.stripe_gateway import GatewayError
from admin.timeutil import from_unix, to_unix, utcnow

DEFAULT_DELETE_OLD = "3 months"
DEFAULT_CANCEL_INCOMPLETE = "1 hour"
DEFAULT_PERIOD = "15 minutes"


@dataclass
class CancelIntents(Selection):
    """``intents.cancel``: the ticked intents or a filter's (page), or Stripe ids on one processor (CLI)."""

    intent_ids: list[str] = field(default_factory=list, metadata={"label": "Payment intents"})

    def check(self) -> None:
        if not self.intent_ids:
            super().check()


def cancellable(query):
    """Only intents that may still be cancelled: not finished, and not gone from Stripe."""
    return query.where(
        StripePaymentIntent.status.in_(OPEN),
        or_(StripePaymentIntent.flags.is_(None), StripePaymentIntent.flags != GONE),
    )


def selection(params: dict):
    """The tracked intents a bulk cancel acts on: the rows ticked on the page, or everything matching a
    filter (as it matches when each chunk is read); either way only those that can still be cancelled."""
    return cancellable(bulk.selection(params, StripePaymentIntent, _matching))


def _matching(criteria: dict):
    return intents_query(IntentFilter.parse_or_raise(criteria))


def selection_summary(params: dict) -> tuple[int, list, int]:
    """(how many will be cancelled, money per currency, how many chosen are final already and left alone)."""
    from admin.services.intents.queries import money_totals

    totals = money_totals(selection(params))
    n = sum(t.count for t in totals)
    chosen = bulk.count(bulk.selection(params, StripePaymentIntent, _matching), StripePaymentIntent)
    return n, totals, max(0, chosen - n)


def _cancel_one(ctx: JobContext, proc: PaymentProcessor, intent_id: str, *, note_all: bool = False) -> None:
    """One unit of a cancel: ask Stripe, record the outcome; a failure that may pass stops the slice so the
    runner tries again later (the same key: Stripe cancels once)."""
    out = cancel_intent(proc, intent_id, action_key=f"job{ctx.job.id}", job_id=ctx.job.id)
    if out.outcome == FAILED and out.transient:
        raise GatewayError(out.message, transient=True, request_id=out.request_id)
    ctx.count(out.outcome)
    if note_all or out.outcome != "cancelled":
        ctx.note(out.message)


def _processor_of(row: StripePaymentIntent, procs: dict[int, PaymentProcessor]) -> PaymentProcessor:
    if row.processor_id not in procs:
        procs[row.processor_id] = db.session.get_one(PaymentProcessor, row.processor_id)
    return procs[row.processor_id]


def _describe(params: dict) -> str:
    if params.get("intent_ids"):
        ids = params["intent_ids"]
        return f"Cancel {', '.join(ids[:3])}" + (f" and {len(ids) - 3} more" if len(ids) > 3 else "")
    return bulk.describe(params, "Cancel", "payment intent")


@job_kind("intents.cancel", params=CancelIntents, title=_describe)
def cancel_intents(ctx: JobContext):
    """Cancel intents in Stripe (cancellation_reason abandoned): ticked rows, a filter, or given Stripe ids."""
    procs: dict[int, PaymentProcessor] = {}
    if ctx.params.get("intent_ids"):  # from the CLI: Stripe ids on one processor, tracked or not
        proc = ctx.require_processor()
        ids = list(ctx.params["intent_ids"])
        ctx.total = len(ids)
        for n in range(int(ctx.cursor.get("next", 0)), len(ids)):
            _cancel_one(ctx, proc, ids[n], note_all=True)
            ctx.cursor["next"] = n + 1
            ctx.done += 1
            yield
        return
    for row in bulk.each(ctx, selection(ctx.params), StripePaymentIntent):
        _cancel_one(ctx, _processor_of(row, procs), row.stripe_intent_id)
        bulk.done(ctx, row)
        yield


# -- Job.process_stripe ----------------------------------------------------------------------


def check_age(text: str | None, name: str, label: str | None = None) -> str:
    """An age option as given ("1 hour", "3 months", "0" to disable), or ServiceError naming it: by ``label``
    (what a page's form calls it), else as the CLI's option."""
    text = (text or "0").strip()
    try:
        age_of(text)
    except ValueError as err:
        raise ServiceError(f"{label or '--' + name.replace('_', '-')}: {err}", field=name) from None
    return text


def period_key(period: str | None, now: datetime | None = None) -> str | None:
    """The period a cron run belongs to: now rounded to the nearest multiple of ``period`` (UTC)."""
    length = age_of(period)
    if not length:
        return None
    secs = int(length.total_seconds())
    stamp = to_unix(now or utcnow())
    return from_unix(round(stamp / secs) * secs).isoformat(timespec="minutes")


def _title(p: dict) -> str:
    parts = []
    parts.append(
        f"cancel incomplete older than {p['cancel_incomplete']}"
        if age_of(p.get("cancel_incomplete"))
        else "no cancelling"
    )
    parts.append(
        f"delete final records older than {p['delete_old']}" if age_of(p.get("delete_old")) else "no deleting"
    )
    return (
        "Process Stripe intents: "
        + ", ".join(parts)
        + (f" (period {p['period']})" if p.get("period") else "")
    )


def _same_period_done(ctx: JobContext) -> Job | None:
    if not ctx.params.get("period"):
        return None
    recent = (
        select(Job)
        .where(
            Job.kind == ctx.job.kind,
            Job.status == JOB_DONE,
            Job.id != ctx.job.id,
            Job.created_at >= utcnow() - timedelta(days=2),
        )
        .order_by(Job.id.desc())
        .limit(200)
    )
    for job in db.session.scalars(recent):
        if job.params == ctx.params and job.processor_id == ctx.job.processor_id:
            return job
    return None


def due_staff_authorisations(ppid: int | None, now: datetime) -> list[int]:
    """Staff "authorise only" charges whose expiry (given by staff) has passed: the job cancels these, and
    never a staff authorisation without an expiry (Stripe releases it after 7 days)."""
    q = select(StripePaymentIntent.id, StripePaymentIntent.extra_data).where(
        StripePaymentIntent.status == "requires_capture", StripePaymentIntent.referrer == STAFF_SOURCE
    )
    if ppid is not None:
        q = q.where(StripePaymentIntent.processor_id == ppid)
    due = []
    for row_id, extra in db.session.execute(q):
        try:
            until = json.loads(extra or "{}").get("cancel_after")
            if until and datetime.fromisoformat(until) <= now:
                due.append(row_id)
        except (ValueError, AttributeError):
            continue
    return due


def _to_cancel(ppid: int | None, before: datetime, staff_due: list[int]):
    """What ``--cancel-incomplete`` cancels: intents waiting for the donor created before ``before``; the
    authorisations paydesk's own donation forms made (``requires_capture``) created before it (the FAQ's
    "cancel uncaptured payments after 1 hour"); and staff authorisations past the expiry staff gave."""
    incomplete = intents_query(IntentFilter(status=["incomplete"], ppid=ppid, until=before))
    from_forms = select(Contribution.id).where(Contribution.donation_form_id.is_not(None))
    uncaptured = and_(
        StripePaymentIntent.status == "requires_capture",
        StripePaymentIntent.created_date < before,
        StripePaymentIntent.contribution_id.in_(from_forms),
    )
    if ppid is not None:
        uncaptured = and_(uncaptured, StripePaymentIntent.processor_id == ppid)
    conds = [StripePaymentIntent.id.in_(incomplete.with_only_columns(StripePaymentIntent.id)), uncaptured]
    if staff_due:
        conds.append(StripePaymentIntent.id.in_(staff_due))
    return select(StripePaymentIntent).where(or_(*conds))


@dataclass
class ProcessStripe(JobParams):
    """``intents.process_stripe`` (page: /intents tools, admins; CLI: ``jobs process-stripe``). ``period``
    is the cron period this run is for (``period_key``), None outside cron."""

    cancel_incomplete: str = field(
        default=DEFAULT_CANCEL_INCOMPLETE,
        metadata={
            "label": "Cancel incomplete older than",
            "help": "Cancel in Stripe the intents waiting for the donor created longer ago than this; 0 disables.",
        },
    )
    delete_old: str = field(
        default=DEFAULT_DELETE_OLD,
        metadata={
            "label": "Delete final records older than",
            "help": "Delete paydesk's records of finished intents created longer ago than this; 0 disables.",
        },
    )
    period: str | None = field(default=None, metadata={"label": "Period"})
    ppid: int | None = field(default=None, metadata={"label": "Processor"})

    def check(self) -> None:
        for name in ("cancel_incomplete", "delete_old"):
            check_age(getattr(self, name), name, type(self).label(name))


@dataclass
class ImportIntents(JobParams):
    """``intents.import`` (page: /intents tools; CLI: ``intents import``): None for all Stripe lists."""

    since: str | None = field(
        default="1 day",
        metadata={
            "label": "Created in the last",
            "help": 'Only intents created in the last ... ("2 hours", "7 days"); 0 for all Stripe lists.',
        },
    )

    def __post_init__(self) -> None:
        if self.since is not None and self.since.strip() == "0":
            self.since = None

    def check(self) -> None:
        if self.since:
            check_age(self.since, "since", type(self).label("since"))


@job_kind("intents.process_stripe", params=ProcessStripe, title=_title, role="admin")
def process_stripe(ctx: JobContext):
    """CiviCRM's Job.process_stripe: cancel in Stripe the incomplete intents (waiting for the donor) and the
    donation forms' uncaptured authorisations older than ``cancel_incomplete`` (and staff authorisations past
    the expiry staff gave them: ``_to_cancel``), then delete local records of final intents older than ``delete_old``."""
    from admin.services.monitoring import alarms

    p = ctx.params
    if not ctx.cursor:
        earlier = _same_period_done(ctx)
        if earlier is not None:
            ctx.count("skipped")
            ctx.note(f"job {earlier.id} already did this period's run ({p['period']}); nothing to do")
            ctx.total = 0
            return
        now = utcnow()
        cancel_age, delete_age = age_of(p.get("cancel_incomplete")), age_of(p.get("delete_old"))
        ctx.cursor = {
            "phase": "cancel",
            "cancel_before": (now - cancel_age).isoformat() if cancel_age else None,
            "delete_before": (now - delete_age).isoformat() if delete_age else None,
        }
    cancel_before = ctx.cursor.get("cancel_before")
    delete_before = ctx.cursor.get("delete_before")
    if cancel_before and "staff_due" not in ctx.cursor:
        ctx.cursor["staff_due"] = due_staff_authorisations(p.get("ppid"), utcnow())
    cancel_q = (
        cancellable(
            _to_cancel(
                p.get("ppid"), datetime.fromisoformat(cancel_before), ctx.cursor.get("staff_due") or []
            )
        )
        if cancel_before
        else None
    )
    delete_q = (
        old_final_query(p.get("ppid"), datetime.fromisoformat(delete_before)) if delete_before else None
    )
    if ctx.total is None:
        ctx.total = (bulk.count(cancel_q, StripePaymentIntent) if cancel_q is not None else 0) + (
            int(db.session.scalar(select(func.count()).select_from(delete_q.subquery())) or 0)
            if delete_q is not None
            else 0
        )
    procs: dict[int, PaymentProcessor] = {}
    if ctx.cursor.get("phase") == "cancel" and cancel_q is not None:
        for row in bulk.each(ctx, cancel_q, StripePaymentIntent):
            _cancel_one(ctx, _processor_of(row, procs), row.stripe_intent_id)
            bulk.done(ctx, row)
            yield
    ctx.cursor["phase"] = "delete"
    if delete_q is not None:
        while True:
            ids = list(db.session.scalars(delete_q.order_by(StripePaymentIntent.id).limit(200)))
            if not ids:
                break
            n = delete_intent_records(ids, job_id=ctx.job.id)
            ctx.count("deleted", n)
            ctx.done += len(ids)
            yield
    ctx.total = ctx.done
    alarms.check()  # cron runs this often: an alarm is logged even when no one has a page open


# -- learning of intents from Stripe ---------------------------------------------------------


@job_kind(
    "intents.import",
    params=ImportIntents,
    title=lambda p: (
        "Import payment intents from Stripe"
        + (f" created in the last {p['since']}" if p.get("since") else " (all Stripe lists)")
    ),
)
def import_intents(ctx: JobContext):
    """Track the intents Stripe lists (e.g. ones paydesk heard nothing about: Stripe sends no webhook when
    an intent is created and then abandoned, and localstripe sends none for created or 3-D Secure)."""
    proc = ctx.require_processor()
    if "since" not in ctx.cursor:
        age = age_of(ctx.params.get("since"))
        ctx.cursor["since"] = (utcnow() - age).isoformat() if age else None
    since = datetime.fromisoformat(ctx.cursor["since"]) if ctx.cursor["since"] else None
    for pi in stripe_intents(proc, since=since, starting_after=ctx.cursor.get("starting_after")):
        ctx.count(learn_intent(proc, pi))
        ctx.cursor["starting_after"] = pi["id"]
        ctx.done += 1
        yield
