"""``/reconcile``: Stripe's charges, refunds and paid invoices next to paydesk's records for a
processor and a period, as the newest kept scan has them (a ``reconcile.scan`` job an operator starts
here: a page view never asks Stripe); fix one row, or every difference of the scan as a job."""

from __future__ import annotations

import json

from flask import Blueprint, render_template, request, url_for

from admin.errors import ServiceError
from admin.htmx import is_htmx, is_partial
from admin.listing import page_or_first
from admin.security import role_required
from admin.services.reconcile import fix as rc_fix
from admin.services.reconcile import scan as rc_scan
from admin.services.reconcile.compare import Row
from admin.services.reconcile.filter import ReconcileFilter
from admin.services.records import unmatched
from admin.services.settings.processors import get_processor, list_processors
from admin.views.actions import action_response, sentence
from admin.views.confirm import JobConfirmation, confirmation, is_run, run_step

bp = Blueprint("reconcile", __name__)


def _results(flt: ReconcileFilter, errors: dict[str, str]) -> dict:
    """The newest kept scan for a filter and the scan job running for it; an unknown processor is a
    message. Stripe is not asked."""
    out: dict = {
        "flt": flt,
        "errors": errors,
        "scan": None,
        "page": None,
        "counts": None,
        "problem_error": None,
        "processor": None,
        "job": None,
    }
    try:
        proc = get_processor(flt.ppid)
    except ServiceError as err:
        out["problem_error"] = sentence(err.message)
        return out
    out["processor"] = proc
    out["job"] = rc_scan.running(proc, flt)
    scan = rc_scan.latest(proc, flt)
    if scan is None:
        return out
    shown = scan.shown(flt)
    page = page_or_first(lambda f: rc_scan.page(shown, f), flt, errors)
    out.update(scan=scan, page=page, counts=scan.counts(), differences=len(scan.differences))
    return out


@bp.get("/reconcile")
@role_required("viewer")
def index():
    flt, errors = ReconcileFilter.from_args(request.args)
    data = _results(flt, errors)
    if is_partial():
        return render_template("reconcile/_results.html", **data)
    return render_template("reconcile/index.html", processors=list_processors(), **_unmatched(), **data)


@bp.post("/reconcile/scan")
@role_required("operator")
def scan():
    """Start comparing the page's period with Stripe (a job; an identical one running is joined). The
    page's results answer: they show the job's progress until its scan is kept."""
    form = request.form
    back = _back(form)
    try:
        flt = _criteria(form)
        proc = get_processor(form.get("ppid") or None)
        started = rc_scan.start(proc, flt)
    except ServiceError as err:
        return action_response("_message.html", back, err.message, "error", status=422)
    message = (
        f"Started: {started.job.title}."
        if started.created
        else f"The same comparison was already {started.job.status}; this is it."
    )
    flt.ppid = proc.id
    return action_response("reconcile/_results.html", back, message, "info", status=202, **_results(flt, {}))


def _criteria(form) -> ReconcileFilter:
    """The page's filter, as the form carries it (JSON); a ``ServiceError`` when it is damaged."""
    try:
        criteria = json.loads(form.get("criteria") or "{}")
    except ValueError:
        criteria = None
    if not isinstance(criteria, dict):
        raise ServiceError("this form is damaged; reload the page")
    return ReconcileFilter.parse_or_raise(criteria)


def _unmatched() -> dict:
    rows, total = unmatched.open_payments()
    return {"unmatched_rows": rows, "unmatched_total": total}


@bp.post("/reconcile/unmatched/<id:row_id>/reviewed")
@role_required("operator")
def unmatched_reviewed(row_id: int):
    """Staff have looked at a payment that named a contribution it did not match: it leaves the list."""
    try:
        row = unmatched.mark_reviewed(row_id)
        message, tone = f"The payment of session {row.session_id} is marked reviewed.", "success"
    except ServiceError as err:
        message, tone = err.message, "error"
    return action_response(
        "reconcile/_unmatched.html", url_for("reconcile.index"), message, tone, **_unmatched()
    )


def _back(form) -> str:
    """The page the form was on (rebuilt from its filter, never a URL taken from the form)."""
    try:
        criteria = json.loads(form.get("criteria") or "{}")
    except ValueError:
        criteria = {}
    flt, _ = ReconcileFilter.from_args(criteria if isinstance(criteria, dict) else {})
    return url_for("reconcile.index", **flt.to_args())


@bp.post("/reconcile/fix")
@role_required("operator")
def fix():
    """Fix one row. A fix that would mark paydesk's record Cancelled asks first (``step=run`` confirms):
    only then may it cancel. The row as looked at here is the one fixed (Stripe is not asked twice)."""
    form = request.form
    back = _back(form)
    obj, stripe_id = form.get("object", ""), form.get("id", "")
    confirmed = form.get("step") == "run"
    try:
        proc = get_processor(form.get("ppid") or None)
        row = rc_fix.check_one(proc, obj, stripe_id)
        if row.remedy == "cancel" and not confirmed:
            template = "reconcile/_confirm_row.html" if is_htmx() else "reconcile/confirm.html"
            return render_template(
                template, row=row, processor=proc, criteria=form.get("criteria") or "{}", back=back
            )
        res = rc_fix.fix(proc, obj, stripe_id, cancel_local=confirmed, before=row)
    except ServiceError as err:
        return action_response(
            "reconcile/_row_message.html",
            back,
            err.message,
            "error",
            status=422,
            obj=obj,
            stripe_id=stripe_id,
        )
    tone = "success" if res.in_step else "error"
    # the page's summary is answered too, from its kept scan, which the fix updated (Stripe is not asked again)
    flt = _page_filter(form.get("criteria"))
    summary = rc_scan.latest(proc, flt) if flt else None
    return action_response(
        "reconcile/_row.html",
        back,
        res.message,
        tone,
        status=200,
        r=res.after,
        processor=proc,
        criteria=form.get("criteria") or "{}",
        fixed=True,
        summary=summary,
        flt=flt,
    )


def _page_filter(criteria: str | None) -> ReconcileFilter | None:
    """The filter of the page a form came from; None when it cannot be read."""
    try:
        args = json.loads(criteria or "{}")
        return ReconcileFilter.parse_or_raise(args if isinstance(args, dict) else {})
    except (ValueError, ServiceError):
        return None


@bp.post("/reconcile/fix-all")
@role_required("operator")
def fix_all():
    """Every difference of the page's kept scan as a job: first the confirmation that says how many and how
    much money per currency, then (``step=run`` with its token) the job, over the scan the confirmation
    counted (its period bounded as the page's filter is, when confirmed and when started)."""
    form = request.form
    back = _back(form)
    if is_run():
        return run_step(("reconcile.fix_all",), back)
    try:
        proc = get_processor(form.get("ppid") or None)
        cancel_local = bool(form.get("cancel_local"))
        flt = _criteria(form)
        scan = rc_scan.latest(proc, flt)  # the page's: what staff were looking at
        if scan is None:
            raise ServiceError("nothing is compared for this period yet: compare with Stripe first")
        todo, left = rc_fix.to_fix(scan.rows, flt, cancel_local=cancel_local)
        params = rc_fix.job_params(flt, cancel_local=cancel_local, scan=scan)
    except ServiceError as err:
        return action_response("_message.html", back, err.message, "error", status=422)
    n = len(todo)
    lines = [f"{len(rows):,} {rows[0].label}" for rows in _grouped(todo)]
    detail = (
        "A background job fetches each row from Stripe again and fixes it: replays its stored event, or "
        "imports the charge / settles the invoice. No receipts are sent."
        + (
            " paydesk's records that Stripe does not have (or has as unpaid) are marked Cancelled, with a note."
            if cancel_local
            else ""
        )
    )
    note = (
        (
            f"{len(left):,} row{'' if len(left) == 1 else 's'} that would mark paydesk's records Cancelled "
            f"{'is' if len(left) == 1 else 'are'} left out."
        )
        if left
        else None
    )
    nothing = (
        None
        if todo
        else (
            "Nothing to fix"
            + (
                f": the {len(left)} left would mark paydesk's records Cancelled. Tick \"Also mark paydesk's records "
                f'Cancelled", or fix them one by one.'
                if left
                else "."
            )
        )
    )
    return confirmation(
        JobConfirmation(
            f"Fix {n:,} difference{'' if n == 1 else 's'}?",
            detail,
            f"Yes, fix {n:,}",
            url_for("reconcile.fix_all"),
            back,
            "Reconcile",
            kind="reconcile.fix_all",
            params=params,
            processor_id=proc.id,
            count=n,
            money=[(amount, cur) for cur, amount in rc_fix.money_totals(todo).items()],
            money_label="Money",
            lines=lines,
            note=note,
            nothing=nothing,
            target="#fix-all-dialog",
        )
    )


def _grouped(rows: list[Row]) -> list[list[Row]]:
    out: dict[str, list[Row]] = {}
    for r in rows:
        out.setdefault(r.problem or "", []).append(r)
    return [out[k] for k in sorted(out)]


@bp.get("/reconcile/row")
@role_required("viewer")
def row():
    """One row as the page's kept scan has it (what "Keep it" puts back in place of a confirmation)."""
    obj, stripe_id = request.args.get("object", ""), request.args.get("id", "")
    criteria = request.args.get("criteria") or "{}"
    try:
        proc = get_processor(request.args.get("ppid") or None)
        flt = _page_filter(criteria) or ReconcileFilter()
        scan = rc_scan.latest(proc, flt)
        r = scan.row(obj, stripe_id) if scan is not None else None
        if r is None:
            raise ServiceError(f"{stripe_id[:64]!r} is not in this comparison any more; reload the page")
    except ServiceError as err:
        return render_template(
            "reconcile/_row_message.html",
            message=sentence(err.message),
            tone="error",
            obj=obj,
            stripe_id=stripe_id,
        ), 422
    return render_template("reconcile/_row.html", r=r, processor=proc, criteria=criteria)
