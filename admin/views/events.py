"""``/events``: browse, filter and inspect Stripe events; replay, ignore, and bulk jobs."""

from __future__ import annotations

from flask import Blueprint, abort, render_template, request, url_for

from admin.errors import ServiceError
from admin.htmx import is_partial
from admin.listing import page_or_first
from admin.models import PaymentProcessor
from admin.security import role_required
from admin.services.events import queries as ev
from admin.services.events.ops import mark_ignored, replay
from admin.services.settings.processors import get_processor, list_processors
from admin.stripe_shapes import stripe_id_problem
from admin.timeutil import from_unix
from admin.views.actions import action_response, bulk_selection, labelled, start_job_response
from admin.views.confirm import JobConfirmation, Option, confirmation, is_run, run_step
from admin.views.export import filter_csv

bp = Blueprint("events", __name__)


def _results(flt: ev.EventFilter, errors: dict[str, str]) -> dict:
    """What the results partial shows for a filter: a page of local or Stripe rows, counts,
    a subscription's expected charges; Stripe failures become a message, not an error page."""
    out: dict = {
        "flt": flt,
        "errors": errors,
        "page": None,
        "rows": [],
        "stripe_rows": [],
        "counts": None,
        "expected": None,
        "stripe_error": None,
        "total": None,
        "stripe_next": None,
    }
    if flt.source == "stripe":
        try:
            proc = get_processor(flt.ppid)
            rows, next_after = ev.stripe_page(proc, flt, starting_after=flt.after)
            out.update(stripe_rows=rows, stripe_next=next_after, processor=proc)
        except ServiceError as err:
            out["stripe_error"] = f"Could not list Stripe's events. {err.message}"
        return out
    page = page_or_first(ev.local_page, flt, errors)
    out.update(page=page, rows=ev.describe_rows(page.rows), counts=ev.status_counts(flt))
    chosen = [v for k, v in out["counts"].items() if not flt.status or k in flt.status]
    capped = [v for v in chosen if v > ev.COUNT_CAP]
    out["total"] = sum(min(v, ev.COUNT_CAP) for v in chosen)
    out["total_label"] = f"{out['total']:,}" + ("+" if capped else "")
    if flt.subscription:
        try:
            out["expected"] = ev.expected_charges(get_processor(flt.ppid), flt.subscription)
        except ServiceError as err:
            out["stripe_error"] = f"Could not ask Stripe for the subscription's invoices. {err.message}"
    return out


@bp.get("/events")
@role_required("viewer")
def index():
    flt, errors = ev.EventFilter.from_args(request.args)
    data = _results(flt, errors)
    if is_partial():
        return render_template("events/_results.html", **data)
    from admin.services.events.jobs import Cleanup, Populate, RetryAll

    tools = {"populate": Populate(), "retry": RetryAll(), "cleanup": Cleanup()}  # the tools' defaults, once
    return render_template("events/index.html", processors=list_processors(), tools=tools, **data)


EVENT_CSV = (
    "id",
    "event_id",
    "type",
    "created",
    "status",
    "status_reason",
    "last_error",
    "attempts",
    "source",
    "processor_id",
    "customer_id",
    "subscription_id",
    "invoice_id",
    "charge_id",
    "payment_intent_id",
    "received_at",
    "processed_at",
)


@bp.get("/events/export.csv")
@role_required("viewer")
def export():
    """The stored events the filter matches (every page), without their bodies; Stripe's own list is not exported."""
    flt, _ = ev.EventFilter.from_args(request.args)
    return filter_csv(
        "events",
        EVENT_CSV,
        ev.event_rows(flt),
        money=(),
        convert={"created": lambda t: from_unix(t).isoformat(timespec="seconds") if t else None},
    )


@bp.get("/events/<id:row_id>")
@role_required("viewer")
def show(row_id: int):
    return render_template("events/show.html", d=ev.detail(_event_or_404(row_id).id))


def _event_or_404(row_id: int):
    try:
        return ev.find_event(row_id)
    except ServiceError:
        abort(404)


def _processor_of(row) -> PaymentProcessor:
    return get_processor(row.processor_id)


@bp.post("/events/<id:row_id>/replay")
@role_required("operator")
def replay_one(row_id: int):
    row = _event_or_404(row_id)
    try:
        res = replay(_processor_of(row), row=row, no_receipt=bool(request.form.get("no_receipt")))
        message = f"Replayed: {res.status}" + (f". {res.message}" if res.message else "")
        tone = "success" if res.ok else "error"
    except ServiceError as err:
        message, tone = err.message, "error"
    return action_response(
        "events/_status.html", url_for("events.show", row_id=row_id), message, tone, d=ev.detail(row.id)
    )


@bp.post("/events/<id:row_id>/ignore")
@role_required("operator")
def ignore_one(row_id: int):
    row = _event_or_404(row_id)
    try:
        mark_ignored(row, request.form.get("reason", ""))
        message, tone = "Marked ignored.", "success"
    except ServiceError as err:
        message, tone = err.message, "error"
    return action_response(
        "events/_status.html",
        url_for("events.show", row_id=row_id),
        message,
        tone,
        d=ev.detail(row.id),
        status=200 if tone == "success" else 422,
    )


@bp.post("/events/replay-from-stripe")
@role_required("operator")
def replay_from_stripe():
    """A row of the Stripe source: store the event if paydesk lacks it, and process it now."""
    event_id = request.form.get("event_id", "").strip()
    back = url_for("events.index", source="stripe", ppid=request.form.get("ppid") or None)
    try:
        problem = stripe_id_problem(event_id, "event")
        if problem:
            raise ServiceError(problem, field="event_id")
        res = replay(get_processor(request.form.get("ppid") or None), event_id=event_id)
        message = f"{event_id}: {res.status}" + (f". {res.message}" if res.message else "")
        tone = "success" if res.ok else "error"
    except ServiceError as err:
        message, tone = err.message, "error"
    return action_response("_message.html", back, message, tone)


BULK = {
    "replay": ("events.replay", "Replay", "replay"),
    "ignore": ("events.ignore", "Mark ignored", "mark ignored"),
}


@bp.post("/events/bulk")
@role_required("operator")
def bulk():
    """Bulk replay / mark ignored of the ticked rows or of everything matching the filter:
    first the confirmation that says how many, then (``step=run`` with its token) the job."""
    from admin.services.events.jobs import selection_count

    back = url_for("events.index")
    if is_run():
        return run_step(("events.replay", "events.ignore"), back)
    action = request.form.get("action")
    if action not in BULK:
        abort(400)
    kind, verb, button = BULK[action]
    try:
        params = bulk_selection(request.form)
        if params is None:
            raise ServiceError("Tick at least one event first.")
        count = selection_count(params)
    except ServiceError as err:
        return action_response("_message.html", back, err.message, "error", status=422)
    many = f"{count:,} event{'' if count == 1 else 's'}"
    if action == "replay":
        options = [Option("no_receipt", "Do not send receipts", bool(request.form.get("no_receipt")))]
        detail = "Each event is fetched from Stripe again and processed now, as a background job."
    else:
        options = [
            Option("reason", "Reason", request.form.get("reason", "").strip(), text=True, required=True)
        ]
        detail = "Each event is marked ignored with your reason; nothing is changed in Stripe."
    return confirmation(
        JobConfirmation(
            f"{verb} {many}?",
            detail,
            f"Yes, {button} {count:,}",
            url_for("events.bulk"),
            back,
            "Events",
            kind=kind,
            params=params,
            count=count,
            options=options,
            target="#bulk-dialog",
            nothing=None if count else "Nothing matches any more.",
        )
    )


@bp.post("/events/tools/<tool>")
@role_required("operator")
def tool(tool: str):
    """Populate log/queue, retry all: a confirmation, then (``step=run``) the job and its progress;
    clean up (admins) starts its job at once, after the browser's own "are you sure"."""
    from admin.services.events.jobs import Cleanup, Populate, RetryAll

    form = request.form
    back = url_for("events.index")
    if tool not in ("populate-log", "populate-queue", "retry-all", "cleanup"):
        abort(404)
    if is_run():
        return run_step(("events.populate", "events.retry_all"), back)
    try:
        if tool == "cleanup":
            proc = get_processor(form.get("ppid")) if form.get("ppid") else None
            return start_job_response(
                "events.cleanup", Cleanup.from_form(form, ppid=proc.id if proc else None)
            )
        proc = get_processor(form.get("ppid") or None)
        if tool == "retry-all":
            p = RetryAll.from_form(form)
            return confirmation(
                JobConfirmation(
                    f"Retry up to {p.limit:,} payment{'' if p.limit == 1 else 's'} of the last {p.days} days?",
                    f"The job lists {proc.name}'s charges of the last {p.days} days in Stripe and, for each one "
                    f"paydesk has not recorded (at most {p.limit:,}), replays the event that records it, or imports "
                    f"the charge when paydesk has no such event. Receipts go out as for any payment.",
                    "Yes, retry all",
                    url_for("events.tool", tool=tool),
                    back,
                    "Events",
                    kind="events.retry_all",
                    params=p,
                    processor_id=proc.id,
                )
            )
        types = [t.strip() for t in form.get("types", "").split(",") if t.strip()]
        p = Populate.from_form(form, types=types or ["all"], queue=tool == "populate-queue")
        what = ", ".join(p.types) or "every type"
        return confirmation(
            JobConfirmation(
                f"{'Populate and queue' if p.queue else 'Populate the log'} from {proc.name}?",
                f"The job copies Stripe's past events ({what}; "
                f"{f'at most {p.limit:,}' if p.limit else 'all Stripe still has, the last 30 days'}) into the log; an "
                f"event already stored is not stored again."
                + (
                    " Each new one is queued and processed, as if Stripe had sent it now."
                    if p.queue
                    else " Nothing is processed."
                ),
                "Yes, populate",
                url_for("events.tool", tool=tool),
                back,
                "Events",
                kind="events.populate",
                params=p,
                processor_id=proc.id,
            )
        )
    except ServiceError as err:
        return action_response("_message.html", back, labelled(err, TOOL_LABELS), "error", status=422)


TOOL_LABELS = {"types": "Types", "older_than": "Older than"}  # the tools' fields, as their forms label them
