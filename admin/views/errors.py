"""Friendly error pages for staff; JSON for ``/webhooks/`` and ``/api/``.

htmx requests get a small fragment carrying the message (``data-toast``); the static
app.js shows it as a toast instead of swapping it into the page.
"""

from __future__ import annotations

import logging

from flask import Blueprint, jsonify, render_template
from flask_wtf.csrf import CSRFError
from werkzeug.exceptions import HTTPException, InternalServerError

from ..extensions import db
from ..htmx import is_htmx
from ..security import wants_json

bp = Blueprint("errors", __name__)
log = logging.getLogger(__name__)

MESSAGES = {
    400: "The request could not be understood.",
    403: "You do not have permission to do that.",
    404: "There is nothing at this address.",
    405: "That action is not available here.",
    500: "Something went wrong on our side. It has been logged; please try again.",
}
PAGES = {403: "errors/403.html", 404: "errors/404.html", 500: "errors/500.html"}


def _respond(code: int, message: str, name: str):
    if wants_json():
        return jsonify(error=name.lower().replace(" ", "_"), message=message, status=code), code
    if is_htmx():
        return render_template("errors/_toast.html", code=code, message=message), code
    template = PAGES.get(code, "errors/generic.html")
    return render_template(template, code=code, message=message, name=name), code


@bp.app_errorhandler(CSRFError)
def csrf_error(err: CSRFError):
    msg = "Your form expired or was sent without its security token. Reload the page and try again."
    return _respond(400, msg, "Bad request")


@bp.app_errorhandler(HTTPException)
def http_error(err: HTTPException):
    code = err.code or 500
    if code >= 500:
        return server_error(err)
    description = err.description if code == 403 and "role" in (err.description or "") else None
    return _respond(code, description or MESSAGES.get(code, err.description or err.name), err.name)


@bp.app_errorhandler(InternalServerError)
def server_error(err: Exception):
    db.session.rollback()
    original = getattr(err, "original_exception", None)
    if original is not None:
        log.error("unhandled error", exc_info=original)
    return _respond(500, MESSAGES[500], "Internal server error")
