"""The public donation form: ``/donate/<slug>``, its JSON payment endpoint and the thank-you page.

Thin: each view reads the request, asks :mod:`admin.services.donations.pages` and renders what it answers
(checks, limits, refusals and their messages live there). These views are exempt from Flask-WTF's CSRF
check: the one-time form token stands in for it. Per-client limits are set up here, around the views
(:func:`init_app`); bodies are at most ``DONATE_MAX_BYTES``, however they are sent (a chunked body over it
is refused with 413 once that much has been read).
"""

from __future__ import annotations

from typing import Any

from flask import Blueprint, Flask, Response, abort, current_app, jsonify, render_template, request
from flask_limiter import RequestLimit
from flask_limiter.errors import RateLimitExceeded
from werkzeug.exceptions import RequestEntityTooLarge

from admin.extensions import csrf
from admin.limiter import client_ip, client_network, init_limiter, limit_view
from admin.security import limit_body, public, uses_stripe_js
from admin.services.donations import pages
from admin.services.donations.forms import public_form
from admin.services.donations.give import read_ref

bp = Blueprint("donate", __name__)
JSON_ENDPOINTS = ("donate.pay", "donate.result", "donate.status")


def _form_or_404(slug: str):
    form = public_form(slug)
    if form is None:
        abort(404)
    return form


def _json(answer: pages.Answer):
    response = jsonify(answer.body)
    response.status_code = answer.status
    if answer.retry_after is not None:
        response.headers["Retry-After"] = str(answer.retry_after)
    return response


@bp.get("/donate/<slug>")
@public
@uses_stripe_js
def page(slug: str):
    shown = pages.page(_form_or_404(slug), request.args.get("donor"))
    return render_template("donate/form.html", **shown.context), shown.status


@bp.post("/donate/<slug>")
@csrf.exempt
@public
@uses_stripe_js
def submit(slug: str):
    """Without JavaScript: check the form and keep what was typed; the card itself needs JavaScript."""
    shown = pages.submitted(_form_or_404(slug), request.form.to_dict())
    return render_template("donate/form.html", **shown.context), shown.status


@bp.post("/donate/<slug>/pay")
@csrf.exempt
@public
def pay(slug: str):
    """The JSON payment endpoint."""
    form = _form_or_404(slug)
    try:
        data = request.get_json(silent=True)
    except RequestEntityTooLarge:
        return _json(pages.too_large())
    return _json(pages.pay(form, data, client_ip()))


def _found_or_problem(form, ref: str):
    """The gift a donor's reference names, or the answer that says plainly why not (404 / 410)."""
    found = read_ref(form, ref)
    if found.contribution is not None:
        return found, None
    return found, _reply(
        pages.ref_problem(found), "This page has expired" if found.expired else "Link not valid"
    )


@bp.post("/donate/<slug>/pay/<ref>/result")
@csrf.exempt
@public
def result(slug: str, ref: str):
    """After the browser's 3-D Secure step: what Stripe says now."""
    form = _form_or_404(slug)
    found, problem = _found_or_problem(form, ref)
    return problem or _json(pages.result(form, found, ref, client_ip()))


@bp.get("/donate/<slug>/thanks/<ref>")
@public
def thanks(slug: str, ref: str):
    form = _form_or_404(slug)
    found, problem = _found_or_problem(form, ref)
    return problem or render_template("donate/thanks.html", **pages.thanks(form, found, ref))


@bp.get("/donate/<slug>/thanks/<ref>/status")
@public
def status(slug: str, ref: str):
    """Polled by the thank-you page until the webhook has completed (or failed) the contribution."""
    found, problem = _found_or_problem(_form_or_404(slug), ref)
    return problem or _json(pages.status(found))


@bp.after_request
def no_store(response):
    """Nothing here may be kept by a browser or a shared cache: the pages carry a one-time form token, a donor
    link's stored details, or what a donor gave."""
    response.headers["Cache-Control"] = "no-store"
    return response


# -- refusals by the rate limits, and errors ------------------------------------------------


def _reply(answer: pages.Answer, heading: str):
    """JSON for the script's endpoints; for people, a page with the answer's message."""
    if request.endpoint in JSON_ENDPOINTS:
        return _json(answer)
    page_html = render_template("donate/message.html", heading=heading, message=answer.body["error"])
    response = current_app.make_response((page_html, answer.status))
    if answer.retry_after is not None:
        response.headers["Retry-After"] = str(answer.retry_after)
    return response


def _on_breach(limit: RequestLimit) -> Response:
    slug = (request.view_args or {}).get("slug", "")
    return _reply(pages.breach(slug, "rate_limit_ip", limit, client_ip()), "Please wait a moment")


@bp.errorhandler(RateLimitExceeded)
def rate_limited(err: RateLimitExceeded):
    return err.response if err.response is not None else _reply(pages.too_many(), "Please wait a moment")


@bp.errorhandler(RequestEntityTooLarge)
def too_large(_err):
    return _reply(pages.too_large(), "Form too large")


@bp.errorhandler(404)
def not_found(_err):
    return _reply(pages.not_found(), "Page not found")


def init_app(app: Flask) -> None:
    """Register the blueprint and its per-client rate limits (shared storage; the per-form limit is spent
    by the service, after the token)."""
    app.register_blueprint(bp)
    for endpoint in ("donate.submit", "donate.pay", "donate.result"):
        limit_body(app, endpoint, "DONATE_MAX_BYTES")
    init_limiter(app)
    cfg = app.config  # read at each request, so a changed setting applies at once
    page_limit: dict[str, Any] = {  # off unless configured: each counted view is a write
        "limit": lambda: cfg["DONATE_RATE_LIMIT_PAGE"] or "1 per second",
        "scope": "donate-page-ip",
        "exempt_when": lambda: not cfg.get("DONATE_RATE_LIMIT_PAGE"),
    }
    pay_limit: dict[str, Any] = {"limit": lambda: cfg["DONATE_RATE_LIMIT_IP"], "scope": "donate-pay-ip"}
    for endpoint, limit in (
        ("donate.page", page_limit),
        ("donate.submit", page_limit),
        # counted in the transaction that spends the token (pages.pay commits it before Stripe is asked)
        ("donate.pay", {**pay_limit, "with_view": True}),
        ("donate.result", pay_limit),
    ):
        limit_view(app, endpoint, key_func=client_network, on_breach=_on_breach, **limit)
