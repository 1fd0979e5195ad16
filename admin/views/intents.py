"""``/intents``: every PaymentIntent paydesk tracks; one intent as Stripe has it now; cancel, capture,
refresh; bulk cancel as a job; learn of intents from Stripe's list."""

from __future__ import annotations

from flask import Blueprint, abort, render_template, request, url_for

from admin.errors import ServiceError
from admin.htmx import is_partial
from admin.listing import page_or_first
from admin.security import role_required
from admin.services.core.idempotency import new_action_key
from admin.services.intents import ops
from admin.services.intents import queries as svc
from admin.services.settings.processors import get_processor, list_processors
from admin.views.actions import action_response, bulk_selection, start_job_response
from admin.views.confirm import JobConfirmation, confirmation, is_run, run_step
from admin.views.export import filter_csv

bp = Blueprint("intents", __name__)


def _results(flt: svc.IntentFilter, errors: dict[str, str]) -> dict:
    page = page_or_first(svc.intent_page, flt, errors)
    totals = svc.intent_summary(flt)
    return {
        "flt": flt,
        "errors": errors,
        "page": page,
        "rows": svc.describe_rows(page.rows),
        "counts": svc.status_counts(flt),
        "totals": totals.value,
        "totals_as_of": totals.as_of,
    }


@bp.get("/intents")
@role_required("viewer")
def index():
    flt, errors = svc.IntentFilter.from_args(request.args)
    data = _results(flt, errors)
    if is_partial():
        return render_template("intents/_results.html", **data)
    from admin.services.intents.jobs import ImportIntents, ProcessStripe

    tools = {"import_": ImportIntents(), "process": ProcessStripe()}  # the tools' defaults, once
    return render_template("intents/index.html", processors=list_processors(), tools=tools, **data)


INTENT_CSV = (
    "id",
    "payment_intent_id",
    "created_date",
    "status",
    "amount",
    "currency",
    "capture_method",
    "customer_id",
    "contact_id",
    "contact",
    "contribution_id",
    "description",
    "referrer",
    "last_error",
    "gone_from_stripe",
    "processor_id",
)


@bp.get("/intents/export.csv")
@role_required("viewer")
def export():
    flt, _ = svc.IntentFilter.from_args(request.args)
    return filter_csv("intents", INTENT_CSV, svc.intent_rows(flt))


def _processor_for(intent_id: str):
    """The intent's processor (from paydesk's record), else the one named by ``ppid``, else the default."""
    row = svc.by_intent_id(intent_id)
    try:
        return get_processor(row.processor_id if row is not None else (request.values.get("ppid") or None))
    except ServiceError:
        abort(404)


def _detail(intent_id: str, fetch: bool = True) -> svc.IntentDetail:
    try:
        intent_id = ops.check_intent_id(intent_id)
    except ServiceError:
        abort(404)
    d = svc.detail(intent_id, _processor_for(intent_id), fetch=fetch)
    if d.local is None and d.stripe is None and (d.stripe_gone or not fetch):
        abort(404, description=f"paydesk does not track {intent_id} and Stripe has no such payment intent.")
    return d


@bp.get("/intents/<intent_id>")
@role_required("viewer")
def show(intent_id: str):
    return render_template("intents/show.html", d=_detail(intent_id), action_key=new_action_key())


def _answer(
    intent_id: str, out: ops.IntentOutcome | None, message: str, tone: str, status: int | None = None
):
    d = _detail(intent_id, fetch=True)
    return action_response(
        "intents/_detail.html",
        url_for("intents.show", intent_id=intent_id),
        message,
        tone,
        status=status,
        d=d,
        action_key=new_action_key(),
        outcome=out,
    )


@bp.post("/intents/<intent_id>/cancel")
@role_required("operator")
def cancel(intent_id: str):
    proc = _processor_for(intent_id)
    try:
        out = ops.cancel_intent(proc, intent_id, action_key=request.form.get("action_key"))
    except ServiceError as err:
        return _answer(intent_id, None, err.message, "error", 422)
    return _answer(intent_id, out, out.message, "success" if out.ok else "error", 200 if out.ok else 422)


@bp.post("/intents/<intent_id>/capture")
@role_required("operator")
def capture(intent_id: str):
    proc = _processor_for(intent_id)
    try:
        out = ops.capture_intent(
            proc, intent_id, amount=request.form.get("amount", ""), action_key=request.form.get("action_key")
        )
    except ServiceError as err:
        return _answer(intent_id, None, err.message, "error", 422)
    return _answer(intent_id, out, out.message, "success" if out.ok else "error", 200 if out.ok else 422)


@bp.post("/intents/<intent_id>/refresh")
@role_required("operator")
def refresh(intent_id: str):
    try:
        out = ops.refresh_intent(_processor_for(intent_id), intent_id)
    except ServiceError as err:
        return _answer(intent_id, None, err.message, "error", 422)
    return _answer(intent_id, out, out.message, "success" if out.ok else "error", 200 if out.ok else 422)


@bp.post("/intents/bulk")
@role_required("operator")
def bulk():
    """Bulk cancel of the ticked rows or of everything matching the filter: first the confirmation that
    says how many and how much money per currency, then (``step=run`` with its token) the job."""
    from admin.services.intents.jobs import selection_summary

    back = url_for("intents.index")
    if is_run():
        return run_step(("intents.cancel",), back)
    try:
        params = bulk_selection(request.form)
        if params is None:
            return action_response(
                "_message.html", back, "Tick at least one intent first.", "error", status=422
            )
        count, totals, left_alone = selection_summary(params)
    except ServiceError as err:
        return action_response("_message.html", back, err.message, "error", status=422)
    note = (
        (
            f"{left_alone:,} of the chosen intent{'' if left_alone == 1 else 's'} already finished and "
            f"{'is' if left_alone == 1 else 'are'} left alone."
        )
        if left_alone
        else None
    )
    return confirmation(
        JobConfirmation(
            f"Cancel {count:,} payment intent{'' if count == 1 else 's'} in Stripe?",
            'Each is cancelled in Stripe with the reason "abandoned"; any authorisation held on a donor\'s card is '
            "released. This runs as a background job; you can follow it here.",
            f"Yes, cancel {count:,}",
            url_for("intents.bulk"),
            back,
            "Payment intents",
            kind="intents.cancel",
            params=params,
            count=count,
            money=[(t.amount, t.currency) for t in totals],
            note=note,
            target="#bulk-dialog",
            attention=True,
            cancel_label="Keep them",
            nothing=None
            if count
            else "None of the chosen intents can be cancelled any more (they have succeeded, "
            "been cancelled, or are gone from Stripe).",
        )
    )


@bp.post("/intents/tools/<tool>")
@role_required("operator")
def tool(tool: str):
    """Learn of intents from Stripe's list; run process-stripe now (admins)."""
    from admin.services.intents.jobs import check_age

    form = request.form
    try:
        if tool == "import":
            proc = get_processor(form.get("ppid") or None)
            since = check_age(form.get("since") or "0", "since", "Created in the last")
            return start_job_response("intents.import", {"since": since if since != "0" else None}, proc.id)
        if tool == "process-stripe":  # an admin's job kind: start_job_response checks the role
            return start_job_response(
                "intents.process_stripe",
                {
                    "cancel_incomplete": check_age(
                        form.get("cancel_incomplete"), "cancel_incomplete", "Cancel incomplete older than"
                    ),
                    "delete_old": check_age(
                        form.get("delete_old"), "delete_old", "Delete final records older than"
                    ),
                    "period": None,
                    "ppid": None,
                },
            )
    except ServiceError as err:
        return action_response("_message.html", url_for("intents.index"), err.message, "error", status=422)
    abort(404)
