"""``/subscriptions``: recurring contributions with their last comparison with Stripe; one
subscription's page (Stripe's side fetched live next to paydesk's, differences highlighted);
import (all, some, one), compare, cancel."""

from __future__ import annotations

from flask import Blueprint, abort, render_template, request, url_for

from admin.errors import ServiceError
from admin.htmx import is_partial
from admin.listing import page_or_first
from admin.models import ContributionRecur
from admin.security import role_required
from admin.services.core import audit
from admin.services.core.bulk import count
from admin.services.records import subscriptions as subs
from admin.services.records.imports import import_subscription_by_id
from admin.services.settings.processors import get_processor, list_processors
from admin.views.actions import action_response, labelled
from admin.views.confirm import JobConfirmation, confirm_import, confirmation, is_run, run_step
from admin.views.export import filter_csv

bp = Blueprint("subscriptions", __name__)


@bp.get("/subscriptions")
@role_required("viewer")
def index():
    flt, errors = subs.SubscriptionFilter.from_args(request.args)
    page = page_or_first(subs.subscription_page, flt, errors)
    data = {
        "flt": flt,
        "errors": errors,
        "page": page,
        "checks": subs.checks_for(page.rows),
        "counts": subs.status_counts(flt),
    }
    if is_partial():
        return render_template("subscriptions/_results.html", **data)
    return render_template("subscriptions/index.html", processors=list_processors(), **data)


SUBSCRIPTION_CSV = (
    "id",
    "subscription_id",
    "status",
    "stripe_status",
    "amount",
    "currency",
    "interval",
    "interval_count",
    "contact_id",
    "contact",
    "customer_id",
    "start_date",
    "next_sched_date",
    "cancel_date",
    "failure_count",
    "processor_id",
    "differs_from_stripe",
    "checked_at",
)


@bp.get("/subscriptions/export.csv")
@role_required("viewer")
def export():
    flt, _ = subs.SubscriptionFilter.from_args(request.args)
    return filter_csv("subscriptions", SUBSCRIPTION_CSV, subs.subscription_rows(flt))


def _processor_for(subscription_id: str):
    """The processor of the subscription's recurring contribution, else ``ppid``, else the default."""
    recur = subs.find_recur(subscription_id)
    try:
        return get_processor(recur.processor_id if recur else (request.values.get("ppid") or None))
    except ServiceError:
        abort(404)


def _valid(subscription_id: str) -> str:
    if not subscription_id.startswith("sub_") or len(subscription_id) > 255:
        abort(404)
    return subscription_id


@bp.get("/subscriptions/<subscription_id>")
@role_required("viewer")
def show(subscription_id: str):
    d = subs.detail(_processor_for(_valid(subscription_id)), subscription_id)
    if d.recur is None and d.stripe is None and not d.stripe_error:
        abort(404)
    return render_template(
        "subscriptions/show.html", d=d, history=audit.for_object("subscription", subscription_id)
    )


@bp.post("/subscriptions/<subscription_id>/import")
@role_required("operator")
def import_one(subscription_id: str):
    """Import (or sync again) this subscription with its invoices and charges, now."""
    proc = _processor_for(_valid(subscription_id))
    try:
        done = import_subscription_by_id(proc, subscription_id)
        message = {
            "created": "Imported.",
            "updated": "Synced: paydesk's records now follow Stripe.",
            "unchanged": "Nothing to change: paydesk already matches Stripe.",
        }[done.outcome]
        if done.differences:
            message += f" {len(done.differences)} difference(s) remain: see below."
        tone = "success"
    except ServiceError as err:
        message, tone = err.message, "error"
    return action_response(
        "subscriptions/_sides.html",
        url_for("subscriptions.show", subscription_id=subscription_id),
        message,
        tone,
        d=subs.detail(proc, subscription_id),
    )


@bp.post("/subscriptions/<subscription_id>/cancel")
@role_required("operator")
def cancel(subscription_id: str):
    """Cancel in Stripe and here: first a confirmation, then (``step=run``) the cancellation."""
    proc = _processor_for(_valid(subscription_id))
    back = url_for("subscriptions.show", subscription_id=subscription_id)
    if request.form.get("step") != "run":
        d = subs.detail(proc, subscription_id)
        if d.stripe is None or d.ended:  # nothing Stripe could cancel: say so rather than ask to confirm
            message = d.stripe_error or (
                f"{subscription_id} has ended already: nothing to cancel."
                if d.ended
                else f"Stripe: there is no subscription {subscription_id} on {proc.name}: nothing to cancel."
            )
            status = 502 if d.stripe_error else 409 if d.stripe is not None else 404
            return action_response("_message.html", back, message, "error", status=status)
        return render_template("subscriptions/_cancel_confirm.html", d=d)
    try:
        subs.cancel(proc, subscription_id)
        message, tone = "Cancelled in Stripe and here. No further payments will be taken.", "success"
    except ServiceError as err:
        message, tone = err.message, "error"
    return action_response(
        "subscriptions/_sides.html", back, message, tone, d=subs.detail(proc, subscription_id)
    )


@bp.post("/subscriptions/import")
@role_required("operator")
def import_many():
    """Import from the list page: one by id (now), or some / all (a job with a progress bar)."""
    form = request.form
    back = url_for("subscriptions.index")
    if is_run():
        return run_step(("imports.subscriptions",), back)
    try:
        proc = get_processor(form.get("ppid") or None)
        one = (form.get("subscription") or "").strip()
        if one:
            done = import_subscription_by_id(proc, one)
            return action_response(
                "_message.html",
                url_for("subscriptions.show", subscription_id=one),
                f"{one}: {done.outcome}.",
                "success",
            )
        return confirm_import(
            "imports.subscriptions",
            proc,
            "subscriptions",
            url_for("subscriptions.import_many"),
            back,
            "Subscriptions",
        )
    except ServiceError as err:
        return action_response(
            "_message.html", back, labelled(err, {"subscription": "One subscription (id)"}), "error"
        )


@bp.post("/subscriptions/compare")
@role_required("operator")
def compare_all():
    """Compare every subscription with Stripe: first a confirmation that says how many, then
    (``step=run``) the job."""
    if is_run():
        return run_step(("subscriptions.compare",), url_for("subscriptions.index"))
    try:
        proc = get_processor(request.form.get("ppid") or None)
    except ServiceError as err:
        return action_response("_message.html", url_for("subscriptions.index"), err.message, "error")
    n = count(subs.subscription_query(subs.SubscriptionFilter(ppid=proc.id)), ContributionRecur)
    return confirmation(
        JobConfirmation(
            f"Compare {n:,} subscription{'' if n == 1 else 's'} with Stripe?",
            f"paydesk has {n:,} subscription{'' if n == 1 else 's'} on {proc.name}. The job looks at every subscription "
            f"Stripe lists there, with its invoices and charges, one at a time, and notes where paydesk differs (and "
            f'what paydesk lacks) for the filter "Differs from Stripe". It changes nothing.',
            "Yes, compare all",
            url_for("subscriptions.compare_all"),
            url_for("subscriptions.index"),
            "Subscriptions",
            kind="subscriptions.compare",
            params={},
            processor_id=proc.id,
            count=n,
        )
    )
