"""``/reconcile``: Stripe's charges, refunds and paid invoices next to paydesk's records for a
processor and a period; fix one row, or every difference as a job."""

from __future__ import annotations

import json

from flask import Blueprint, render_template, request, url_for

from admin.errors import ServiceError
from admin.htmx import is_htmx, is_partial
from admin.listing import page_or_first
from admin.security import role_required
from admin.services.reconcile import service as rc
from admin.services.records import unmatched
from admin.services.settings.processors import get_processor, list_processors
from admin.stripe_gateway import GatewayError
from admin.views.actions import action_response, sentence, start_job_response

bp = Blueprint("reconcile", __name__)


def _results(flt: rc.ReconcileFilter, errors: dict[str, str]) -> dict:
    """The comparison for a filter; a Stripe failure or an unknown processor is a message, not an error page."""
    out: dict = {"flt": flt, "errors": errors, "scan": None, "page": None, "counts": None, "problem_error": None,
                 "processor": None}
    try:
        proc = get_processor(flt.ppid)
        out["processor"] = proc
        scan = rc.recent_scan(proc, flt)
    except ServiceError as err:
        out["problem_error"] = sentence(err.message)
        return out
    except GatewayError as err:
        out["problem_error"] = f"Could not ask Stripe: {err.message}. Nothing was compared; try again."
        return out
    shown = scan.shown(flt)
    page = page_or_first(lambda f: rc.page(shown, f), flt, errors)
    out.update(scan=scan, page=page, counts=scan.counts(), differences=len(scan.differences))
    return out


@bp.get("/reconcile")
@role_required("viewer")
def index():
    flt, errors = rc.ReconcileFilter.from_args(request.args)
    data = _results(flt, errors)
    if is_partial():
        return render_template("reconcile/_results.html", **data)
    return render_template("reconcile/index.html", processors=list_processors(), **_unmatched(), **data)


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
    return action_response("reconcile/_unmatched.html", url_for("reconcile.index"), message, tone, **_unmatched())


def _back(form) -> str:
    """The page the form was on (rebuilt from its filter, never a URL taken from the form)."""
    try:
        criteria = json.loads(form.get("criteria") or "{}")
    except ValueError:
        criteria = {}
    flt, _ = rc.ReconcileFilter.from_args(criteria if isinstance(criteria, dict) else {})
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
        row = rc.check_one(proc, obj, stripe_id)
        if row.remedy == "cancel" and not confirmed:
            template = "reconcile/_confirm_row.html" if is_htmx() else "reconcile/confirm.html"
            return render_template(template, row=row, processor=proc, criteria=form.get("criteria") or "{}",
                                   back=back)
        flt, page_scan = _page_scan(proc, form.get("criteria"))  # before the fix, which forgets kept scans
        res = rc.fix(proc, obj, stripe_id, cancel_local=confirmed, before=row)
    except (ServiceError, GatewayError) as err:
        return action_response("reconcile/_row_message.html", back, getattr(err, "message", str(err)), "error",
                               status=422, obj=obj, stripe_id=stripe_id)
    tone = "success" if res.in_step else "error"
    # the page's summary is answered too, counting the row as it is now (Stripe is not asked again for it)
    summary = rc.with_row(page_scan, res.after) if page_scan else None
    return action_response("reconcile/_row.html", back, res.message, tone, status=200, r=res.after,
                           processor=proc, criteria=form.get("criteria") or "{}", fixed=True, summary=summary,
                           flt=flt)


def _page_scan(proc, criteria: str | None) -> tuple[rc.ReconcileFilter | None, rc.Scan | None]:
    """The filter and the kept scan of the page a fix came from; (None, None) when they cannot be read."""
    try:
        args = json.loads(criteria or "{}")
        flt = rc.ReconcileFilter.parse_or_raise(args if isinstance(args, dict) else {})
    except (ValueError, ServiceError):
        return None, None
    return flt, rc.kept_scan(proc, flt)


@bp.post("/reconcile/fix-all")
@role_required("operator")
def fix_all():
    """Every difference of the filter as a job: first a confirmation that says how many and how
    much money per currency, then (``step=run``) the job, over the period the confirmation counted."""
    form = request.form
    back = _back(form)
    try:
        proc = get_processor(form.get("ppid") or None)
        cancel_local = bool(form.get("cancel_local"))
        if form.get("step") == "run":
            try:
                params = json.loads(form.get("params") or "")
            except ValueError:
                raise ServiceError("this confirmation is damaged; reload the page") from None
            if not isinstance(params, dict):
                raise ServiceError("this confirmation is damaged; reload the page")
            flt = rc.filter_of(params)
            return start_job_response("reconcile.fix_all",
                                      rc.job_params(flt, cancel_local=bool(params.get("cancel_local"))), proc.id)
        criteria = json.loads(form.get("criteria") or "{}")
        if not isinstance(criteria, dict):
            raise ValueError("criteria")
        flt = rc.ReconcileFilter.parse_or_raise(criteria)
        scan = rc.recent_scan(proc, flt)  # the page's: what staff were looking at
        todo, left = rc.to_fix(scan.rows, flt, cancel_local=cancel_local)
    except ServiceError as err:
        return action_response("_message.html", back, err.message, "error", status=422)
    except GatewayError as err:
        return action_response("_message.html", back, f"Could not ask Stripe: {err.message}", "error", status=422)
    except ValueError:
        return action_response("_message.html", back, "this form is damaged; reload the page", "error", status=422)
    template = "reconcile/_fix_all_confirm.html" if is_htmx() else "reconcile/fix_all.html"
    return render_template(template, todo=todo, left=left, totals=rc.money_totals(todo), processor=proc,
                           params=rc.job_params(flt, cancel_local=cancel_local, window=(scan.since, scan.until)),
                           cancel_local=cancel_local,
                           criteria=form.get("criteria") or "{}", back=back)


@bp.get("/reconcile/row")
@role_required("viewer")
def row():
    """One row as it stands now (what "Keep it" puts back in place of a confirmation)."""
    try:
        proc = get_processor(request.args.get("ppid") or None)
        r = rc.check_one(proc, request.args.get("object", ""), request.args.get("id", ""))
    except (ServiceError, GatewayError) as err:
        return render_template("reconcile/_row_message.html", message=getattr(err, "message", str(err)),
                               tone="error", obj=request.args.get("object", ""), stripe_id=request.args.get("id", "")), 422
    return render_template("reconcile/_row.html", r=r, processor=proc, criteria=request.args.get("criteria") or "{}")
