"""``/events``: browse, filter and inspect Stripe events; replay, ignore, and bulk jobs."""

from __future__ import annotations

from flask import Blueprint, abort, render_template, request, url_for

from admin.dbutil import parse_whole
from admin.errors import ServiceError
from admin.htmx import is_htmx, is_partial
from admin.listing import page_or_first
from admin.models import PaymentProcessor
from admin.security import role_required
from admin.services.events import queries as ev
from admin.services.events.ops import mark_ignored, replay
from admin.services.settings.processors import get_processor, list_processors
from admin.stripe_shapes import stripe_id_problem
from admin.timeutil import from_unix
from admin.views.actions import action_response, labelled, start_job_response
from admin.views.export import filter_csv

bp = Blueprint("events", __name__)


def _results(flt: ev.EventFilter, errors: dict[str, str]) -> dict:
    """What the results partial shows for a filter: a page of local or Stripe rows, counts,
    a subscription's expected charges; Stripe failures become a message, not an error page."""
    out: dict = {"flt": flt, "errors": errors, "page": None, "rows": [], "stripe_rows": [], "counts": None,
                 "expected": None, "stripe_error": None, "total": None, "stripe_next": None}
    if flt.source == "stripe":
        try:
            proc = get_processor(flt.ppid)
            rows, next_after = ev.stripe_page(proc, flt, starting_after=flt.after)
            out.update(stripe_rows=rows, stripe_next=next_after, processor=proc)
        except ServiceError as err:
            out["stripe_error"] = f"Could not list Stripe's events: {err.message}"
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
            out["stripe_error"] = f"Could not ask Stripe for the subscription's invoices: " \
                                  f"{err.message}"
    return out


@bp.get("/events")
@role_required("viewer")
def index():
    flt, errors = ev.EventFilter.from_args(request.args)
    data = _results(flt, errors)
    if is_partial():
        return render_template("events/_results.html", **data)
    return render_template("events/index.html", processors=list_processors(), **data)


EVENT_CSV = ("id", "event_id", "type", "created", "status", "status_reason", "last_error", "attempts", "source",
             "processor_id", "customer_id", "subscription_id", "invoice_id", "charge_id", "payment_intent_id",
             "received_at", "processed_at")


@bp.get("/events/export.csv")
@role_required("viewer")
def export():
    """The stored events the filter matches (every page), without their bodies; Stripe's own list is not exported."""
    flt, _ = ev.EventFilter.from_args(request.args)
    return filter_csv("events", EVENT_CSV, ev.event_rows(flt), money=(),
                      convert={"created": lambda t: from_unix(t).isoformat(timespec="seconds") if t else None})


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
    return action_response("events/_status.html", url_for("events.show", row_id=row_id), message, tone,
                           d=ev.detail(row.id))


@bp.post("/events/<id:row_id>/ignore")
@role_required("operator")
def ignore_one(row_id: int):
    row = _event_or_404(row_id)
    try:
        mark_ignored(row, request.form.get("reason", ""))
        message, tone = "Marked ignored.", "success"
    except ServiceError as err:
        message, tone = err.message, "error"
    return action_response("events/_status.html", url_for("events.show", row_id=row_id), message, tone,
                           d=ev.detail(row.id), status=200 if tone == "success" else 422)


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


@bp.post("/events/bulk")
@role_required("operator")
def bulk():
    """Bulk replay / mark ignored of the ticked rows or of everything matching the filter:
    first a confirmation that says how many, then a job."""
    from admin.services.events.jobs import selection_count
    from admin.views.actions import bulk_selection

    action = request.form.get("action")
    if action not in ("replay", "ignore"):
        abort(400)
    try:
        params = bulk_selection(request.form)
    except ServiceError as err:
        return action_response("_message.html", url_for("events.index"), err.message, "error", status=422)
    if params is None:
        return action_response("_message.html", url_for("events.index"), "Tick at least one event first.",
                               "error", status=422)
    if action == "ignore":
        params["reason"] = request.form.get("reason", "").strip()
    else:
        params["no_receipt"] = bool(request.form.get("no_receipt"))
    confirm = "events/_bulk_confirm.html" if is_htmx() else "events/bulk.html"
    if request.form.get("step") != "run":
        return render_template(confirm, action=action, params=params, count=selection_count(params))
    try:
        if action == "ignore" and not params["reason"]:
            raise ServiceError("Say why these events are to be ignored.", field="reason")
        return start_job_response(f"events.{action}", params)  # the job kind checks the reason's text
    except ServiceError as err:
        return render_template(confirm, action=action, params=params, count=selection_count(params),
                               error=err.message), 422


@bp.post("/events/tools/<tool>")
@role_required("operator")
def tool(tool: str):
    """Populate log/queue, retry all, clean up: each starts a job and shows its progress."""
    from admin.services.events.jobs import cleanup_age

    form = request.form
    try:
        proc = get_processor(form.get("ppid") or None)
        if tool in ("populate-log", "populate-queue"):
            types = [t.strip() for t in form.get("types", "").split(",") if t.strip() and t.strip() != "all"]
            limit = _int(form.get("limit"), "limit", "At most", 0, 1_000_000)
            return start_job_response("events.populate", {"types": types, "limit": limit,
                                                          "queue": tool == "populate-queue"}, proc.id)
        if tool == "retry-all":
            return start_job_response("events.retry_all", {
                "limit": _int(form.get("limit"), "limit", "At most", 1, 10_000) or 25,
                "days": _int(form.get("days"), "days", "Days back", 1, 365) or 30}, proc.id)
        if tool == "cleanup":
            cleanup_age(form.get("older_than", ""))
            return start_job_response("events.cleanup", {"older_than": form.get("older_than"),
                                                         "include_errors": bool(form.get("include_errors")),
                                                         "ppid": proc.id if form.get("ppid") else None})
    except ServiceError as err:
        return action_response("_message.html", url_for("events.index"), labelled(err, TOOL_LABELS), "error",
                               status=422)
    abort(404)


TOOL_LABELS = {"types": "Types", "older_than": "Older than"}  # the tools' fields, as their forms label them


def _int(text: str | None, name: str, label: str, low: int, high: int) -> int:
    if not (text or "").strip():
        return 0
    number = parse_whole(text, low, high)
    if number is None:
        raise ServiceError(f"{label}: a whole number from {low} to {high:,}, please", field=name)
    return number
