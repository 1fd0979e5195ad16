"""Friendly error pages for staff; JSON for ``/webhooks/`` and ``/api/``.

htmx requests get a small fragment carrying the message (``data-toast``); the static
app.js shows it as a toast instead of swapping it into the page.

An unhandled exception is logged once, by Flask (``Exception on /path [GET]`` with its traceback);
the 500 handler here only answers. A database that cannot be reached is not a bug: the request is
answered 503 with ``Retry-After`` (Stripe retries a webhook either way; staff see "try again") and
logged through a throttled log, one traceback per distinct error and then one summary line per
interval, so an outage does not flood the log.
"""

from __future__ import annotations

import logging

from flask import Blueprint, current_app, g, jsonify, render_template, request
from flask_wtf.csrf import CSRFError
from sqlalchemy.exc import DBAPIError
from sqlalchemy.exc import TimeoutError as PoolTimeoutError
from werkzeug.exceptions import HTTPException, InternalServerError

from admin.dbutil import rollback_quietly
from admin.extensions import login_manager
from admin.failures import database_unavailable
from admin.htmx import is_htmx
from admin.outage import refused_in_outage, throttled
from admin.security import wants_json

bp = Blueprint("errors", __name__)
log = logging.getLogger(__name__)

MESSAGES = {
    400: "The request could not be understood.",
    403: "You do not have permission to do that.",
    404: "There is nothing at this address.",
    405: "That action is not available here.",
    500: "Something went wrong on our side. It has been logged; please try again.",
    503: "The database is not reachable right now. Please try again in a moment.",
}
PAGES = {403: "errors/403.html", 404: "errors/404.html", 500: "errors/500.html"}
REFUSED = "database unavailable: {n} requests refused in the last {seconds} s"


def _respond(code: int, message: str, name: str):
    if request.path.startswith("/api/"):  # the API's one error shape
        from admin.api.errors import code_for

        return jsonify(error={"code": code_for(code), "message": message, "field": None}), code
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
    # Flask has logged the original exception already (Flask.log_exception); logging it here too wrote
    # every traceback twice.
    rollback_quietly()
    return _respond(500, MESSAGES[500], "Internal server error")


@bp.app_errorhandler(DBAPIError)
@bp.app_errorhandler(PoolTimeoutError)
def database_error(err: Exception):
    if not database_unavailable(err):
        raise err  # a failing statement is a bug: Flask logs it once and answers 500
    rollback_quietly()
    throttled("web", REFUSED, log).error(err, "request refused with 503")
    refused_in_outage()  # counted above: no access-log line of its own
    # The page must not need the database either: shown as to a signed-out visitor (no navigation, no
    # user box), since loading the user, or reading one whose row the rollback expired, is a query.
    g._login_user = login_manager.anonymous_user()
    resp = _respond(503, MESSAGES[503], "Service unavailable")
    resp = current_app.make_response(resp)
    resp.headers["Retry-After"] = str(int(current_app.config["DB_RETRY_AFTER"]))
    return resp
