"""Liveness and readiness: ``/healthz``."""

from flask import Blueprint, jsonify
from sqlalchemy import text

from admin.extensions import db

bp = Blueprint("health", __name__)


@bp.get("/healthz")
def healthz():
    try:
        db.session.execute(text("SELECT 1"))
        return jsonify(status="ok", database="ok")
    except Exception as exc:  # the point of a health check is to say so, not to raise
        return jsonify(status="error", database=type(exc).__name__), 503
