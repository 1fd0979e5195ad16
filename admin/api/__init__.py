"""``/api/v1``: paydesk's JSON API for other systems (automation tools, a CRM, a website's scripts).

Token-authenticated (``auth``), one error shape (``errors``), inputs validated by pydantic models that also
write the OpenAPI 3.1 document (``spec``, ``schemas``); the routes call the same services and filters as
the pages: ``lists`` (read-only lists), ``actions`` (customers, products), ``triggers`` (polling feeds),
``docs`` (the document, and ``/api/docs`` for people).
"""

from __future__ import annotations

from flask import Blueprint, Flask, request

from admin.errors import ServiceError

from .auth import authenticate, stop_acting
from .errors import ApiError, api_error_response

bp = Blueprint("api", __name__, url_prefix="/api/v1")
docs_bp = Blueprint("api_docs", __name__)


def _body_is_json() -> None:
    """A write's body is a JSON object (or nothing); anything else is refused before any work."""
    if request.method in ("GET", "HEAD", "OPTIONS") or not request.get_data(cache=True):
        return
    if not request.is_json:
        raise ApiError(
            415, "unsupported_media_type", "Send the body as JSON (Content-Type: application/json)."
        )
    if not isinstance(request.get_json(silent=True), dict):
        raise ApiError(400, "invalid_request", "The body is not a JSON object.")


bp.before_request(authenticate)
bp.before_request(_body_is_json)
bp.teardown_request(stop_acting)
bp.register_error_handler(ApiError, api_error_response)
bp.register_error_handler(ServiceError, api_error_response)


def init_app(app: Flask) -> None:
    from admin.extensions import csrf
    from admin.limiter import init_limiter

    from . import actions, docs, lists, triggers  # noqa: F401  (their routes)
    from .feed import install

    if "paydesk_limiter" not in app.extensions:
        init_limiter(app)
    app.config.setdefault("API_RATE_LIMIT", "100 per 60 seconds")
    # Token-authenticated: no cookie carries these requests, so there is nothing for CSRF to protect. The
    # staff pages (including /settings/tokens) keep their CSRF checks.
    csrf.exempt(bp)
    app.register_blueprint(bp)
    app.register_blueprint(docs_bp)
    install()
