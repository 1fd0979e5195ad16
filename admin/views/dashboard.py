"""The dashboard at ``/``: the counts staff look at first."""

from __future__ import annotations

from flask import Blueprint, render_template

from ..htmx import is_partial
from ..security import role_required
from ..services.dashboard import dashboard_counts

bp = Blueprint("dashboard", __name__)


@bp.get("/")
@role_required("viewer")
def index():
    counts = dashboard_counts()
    template = "dashboard/_counts.html" if is_partial() else "dashboard/index.html"
    return render_template(template, counts=counts)
