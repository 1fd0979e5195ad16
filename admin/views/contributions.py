"""``/contributions`` (list, totals per currency, CSV export of exactly what is filtered), one
contribution's page, and importing a charge by id."""

from __future__ import annotations

from flask import Blueprint, abort, render_template, request, url_for

from admin.dbutil import parse_id
from admin.errors import ServiceError
from admin.htmx import is_partial
from admin.listing import page_or_first
from admin.models import CONTRIBUTION_STATUSES
from admin.security import role_required
from admin.services.core import audit
from admin.services.records import common as rec
from admin.services.records.imports import import_charge
from admin.services.settings.processors import get_processor, list_processors
from admin.views.actions import action_response, labelled
from admin.views.export import csv_response
from admin.views.payments import money_context

bp = Blueprint("contributions", __name__)


def _results(flt: rec.ContributionFilter, errors: dict[str, str]) -> dict:
    page = page_or_first(rec.contribution_page, flt, errors)
    totals = rec.contribution_summary(flt)
    return {
        "flt": flt,
        "errors": errors,
        "page": page,
        "counts": rec.contribution_status_counts(flt),
        "totals": totals.value,
        "totals_as_of": totals.as_of,
    }


@bp.get("/contributions")
@role_required("viewer")
def index():
    flt, errors = rec.ContributionFilter.from_args(request.args)
    data = _results(flt, errors)
    if is_partial():
        return render_template("contributions/_results.html", **data)
    return render_template(
        "contributions/index.html", processors=list_processors(), statuses=CONTRIBUTION_STATUSES, **data
    )


@bp.get("/contributions/export.csv")
@role_required("viewer")
def export():
    flt, _ = rec.ContributionFilter.from_args(request.args)
    return csv_response(
        "contributions", rec.CONTRIBUTION_CSV, rec.contribution_rows(flt), rec.contribution_csv_row
    )


@bp.get("/contributions/<id:contribution_id>")
@role_required("viewer")
def show(contribution_id: int):
    c = rec.find_contribution(contribution_id)
    if c is None:
        abort(404)
    return render_template(
        "contributions/show.html",
        intents=rec.intents_of(c),
        events=rec.events_of(c),
        history=audit.for_object("contribution", str(c.id)),
        only=None,
        **money_context(c),
    )


@bp.post("/contributions/import-charge")
@role_required("operator")
def import_one_charge():
    """CiviCRM's importcharge from the page: one charge by id, optionally for a given contact."""
    form = request.form
    back = url_for("contributions.index")
    contact_id = (form.get("contact_id") or "").strip()
    try:
        if contact_id and parse_id(contact_id) is None:
            raise ServiceError("the contact id is a number (the # on the contact's page)", field="contact_id")
        c = import_charge(
            get_processor(form.get("ppid") or None), form.get("charge", ""), contact_id=parse_id(contact_id)
        )
    except ServiceError as err:
        return action_response(
            "_message.html", back, labelled(err, {"charge": "Charge id", "contact_id": "Contact #"}), "error"
        )
    return action_response(
        "contributions/_imported.html",
        url_for("contributions.show", contribution_id=c.id),
        f"Imported: contribution #{c.id}, {c.status}.",
        "success",
        c=c,
    )
