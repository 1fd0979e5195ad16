"""``/payments``: charges and refunds, totals per currency, CSV export of exactly what is filtered."""

from __future__ import annotations

from flask import Blueprint, render_template, request

from admin.htmx import is_partial
from admin.listing import page_or_first
from admin.security import role_required
from admin.services.records import common as rec
from admin.services.settings.processors import list_processors
from admin.views.export import csv_response

bp = Blueprint("payments", __name__)


@bp.get("/payments")
@role_required("viewer")
def index():
    flt, errors = rec.PaymentFilter.from_args(request.args)
    page = page_or_first(rec.payment_page, flt, errors)
    totals = rec.payment_summary(flt)
    data = {"flt": flt, "errors": errors, "page": page, "counts": rec.payment_status_counts(flt),
            "totals": totals.value, "totals_as_of": totals.as_of}
    if is_partial():
        return render_template("payments/_results.html", **data)
    return render_template("payments/index.html", processors=list_processors(), **data)


@bp.get("/payments/export.csv")
@role_required("viewer")
def export():
    flt, _ = rec.PaymentFilter.from_args(request.args)
    return csv_response("payments", rec.PAYMENT_CSV, rec.payment_rows(flt), rec.payment_csv_row)
