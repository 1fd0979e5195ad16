"""``/audit``: every staff action, newest first; read-only."""

from __future__ import annotations

from flask import Blueprint, render_template, request

from ..htmx import is_partial
from ..listing import page_or_first
from ..security import role_required
from ..services import audit

bp = Blueprint("audit", __name__)


@bp.get("/audit")
@role_required("viewer")
def index():
    flt, errors = audit.AuditFilter.from_args(request.args)
    page = page_or_first(audit.audit_page, flt, errors)
    template = "audit/_results.html" if is_partial() else "audit/index.html"
    return render_template(template, flt=flt, errors=errors, page=page, actions=audit.actions())
