"""The ``/api/v1`` blueprints and what every request goes through first (token, JSON body, errors).

Apart from ``admin/api/__init__.py`` so that the route modules import ``bp`` from here, not from the
package that imports them (no circle)."""

from __future__ import annotations

from flask import Blueprint, request

from admin.api.auth import authenticate, stop_acting
from admin.api.errors import ApiError, api_error_response
from admin.errors import ServiceError

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
