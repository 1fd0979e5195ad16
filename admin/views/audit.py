"""``/audit``: every staff action, newest first; read-only."""

from __future__ import annotations

from flask import Blueprint, render_template, request

from admin.htmx import is_partial
from admin.listing import page_or_first
from admin.security import role_required
from admin.services.core import audit
from admin.views.export import filter_csv

bp = Blueprint("audit", __name__)
AUDIT_CSV = (
    "id",
    "at",
    "actor",
    "action",
    "object_type",
    "object_id",
    "processor_id",
    "parameters",
    "result",
    "message",
    "stripe_request_id",
)


@bp.get("/audit")
@role_required("viewer")
def index():
    flt, errors = audit.AuditFilter.from_args(request.args)
    page = page_or_first(audit.audit_page, flt, errors)
    template = "audit/_results.html" if is_partial() else "audit/index.html"
    return render_template(template, flt=flt, errors=errors, page=page, actions=audit.actions())


@bp.get("/audit/export.csv")
@role_required("viewer")
def export():
    flt, _ = audit.AuditFilter.from_args(request.args)
    return filter_csv("audit", AUDIT_CSV, audit.audit_rows(flt), money=())
