"""The public donation form: ``/donate/<slug>``, its JSON payment endpoint and the thank-you page.

No sign-in. The one-time form token stands in for the session CSRF token here (these views are
exempt from Flask-WTF's check): it is issued with the page, good for one payment request, and
a request without a valid one is refused before anything else happens.

Limits: per client (an IPv4 address, an IPv6 /64: ``limiter.network_of``) on every payment request,
by Flask-Limiter around the views; per form (all donors together) only on requests that carry a
valid one-time token (or, after 3-D Secure, a genuine reference), spent inside the views, so
strangers without one cannot use up what honest donors share. A refusal says how long to wait,
from the limit that refused. Bodies: at most ``DONATE_MAX_BYTES``, however they are sent (a
chunked body over it is refused with 413 once that much has been read).
"""

from __future__ import annotations

from flask import Blueprint, Flask, abort, current_app, jsonify, render_template, request, url_for
from flask_limiter import RequestLimit
from flask_limiter.errors import RateLimitExceeded
from werkzeug.exceptions import RequestEntityTooLarge

from admin.extensions import csrf
from admin.limiter import client_ip, client_network, init_limiter, limit_view, retry_after, spend, wait_words
from admin.security import limit_body, public, uses_stripe_js
from admin.services.donations import give as donations
from admin.services.donations import guard
from admin.services.donations.forms import check_donor_link, frequency_choices, public_form, range_text

bp = Blueprint("donate", __name__)

EXPIRED = "This form has expired. Reload the page to give."
REFUSED = "We could not accept this form. Reload the page and try again."
TOO_MANY = "Too many attempts from your connection. Please try again in {wait}."
BUSY = "This form is taking too many gifts at once. Please try again in {wait}."
BLOCKED = "Too many failed payments from your connection. Please try again in {wait}."
CAPTCHA = "Please complete the check that you are not a robot."
FIX_FIELDS = "Please correct the marked fields."
LINK_ON_PAGE = "{problem} You can still give below."
LINK_ON_PAY = "{problem} Reload the page to give."


def _form_or_404(slug: str):
    form = public_form(slug)
    if form is None:
        abort(404)
    return form


def _render(form, *, values=None, errors=None, donor=None, notice=None, status=200):
    """The form; ``donor``: the contact of a usable signed donor link (its stored details filled in)."""
    known_postcode = donor.postal_code if donor is not None else None
    values = dict(values or {})
    if donor is not None and not values:
        first, _, last = (donor.display_name or "").partition(" ")
        values = {"first_name": first, "last_name": last, "email": donor.email or ""}
    return render_template(
        "donate/form.html", form=form, values=values, errors=errors or {}, notice=notice,
        token=guard.issue_token(form), donor_token=request.values.get("donor", "") if donor else "",
        known_postcode=known_postcode or "", publishable_key=form.processor.publishable_key or "",
        frequencies=frequency_choices(form), range_text=range_text(form),
        honeypot=guard.HONEYPOT_FIELD), status


@bp.get("/donate/<slug>")
@public
@uses_stripe_js
def page(slug: str):
    form = _form_or_404(slug)
    link = check_donor_link(form, request.args.get("donor"))
    notice = LINK_ON_PAGE.format(problem=link.problem) if link.problem else None
    return _render(form, donor=link.contact, notice=notice)


@bp.post("/donate/<slug>")
@csrf.exempt
@public
@uses_stripe_js
def submit(slug: str):
    """Without JavaScript: check the form and keep what was typed; the card itself needs JavaScript."""
    form = _form_or_404(slug)
    values = request.form.to_dict()
    link = check_donor_link(form, values.get("donor"))
    donor = link.contact
    _gift, errors = donations.validate(form, values, donor)
    notice = None if errors else "Card payments on this page need JavaScript: please turn it on and try again."
    if link.problem:
        notice = LINK_ON_PAGE.format(problem=link.problem)
    return _render(form, values=values, errors=errors, donor=donor, notice=notice, status=422)


def _json(body: dict, status: int, form=None, *, token: bool = True):
    if token and form is not None:
        body["token"] = guard.issue_token(form)
    return jsonify(body), status


def _outcome(form, outcome: donations.Outcome, ref: str | None = None, gift: donations.Gift | None = None):
    body: dict = {"status": outcome.status}
    c = outcome.contribution
    if c is not None and c.id is not None and outcome.status in ("succeeded", "requires_action"):
        ref = ref or donations.ref_of(c, gift)
        body["redirect"] = url_for("donate.thanks", slug=form.slug, ref=ref)
        body["result_url"] = url_for("donate.result", slug=form.slug, ref=ref)
    if outcome.client_secret:
        body["client_secret"] = outcome.client_secret
    if outcome.message:
        body["error"] = outcome.message
    if outcome.errors:
        body["errors"] = outcome.errors
    # A fresh token only where trying again is safe: not once Stripe may have taken the money.
    return _json(body, outcome.http, form, token=outcome.status not in ("succeeded", "requires_action", "unconfirmed"))


def _refused(seconds: int, text: str, form=None, *, status: int = 429):
    body, code = _json({"status": "refused", "error": text.format(wait=wait_words(seconds))}, status, form)
    body.headers["Retry-After"] = str(seconds)
    return body, code


def _form_limit(form) -> int:
    """Spend one of the requests every donor to ``form`` shares; seconds to wait when it is used up."""
    return spend(current_app.config["DONATE_RATE_LIMIT_FORM"], f"form:{form.slug}", scope="donate-pay-form")


@bp.post("/donate/<slug>/pay")
@csrf.exempt
@public
def pay(slug: str):
    """The JSON payment endpoint: checks, then :func:`admin.services.donations.give.give`."""
    form = _form_or_404(slug)
    try:
        data = request.get_json(silent=True)
    except RequestEntityTooLarge:
        return _json({"status": "invalid", "error": REFUSED}, 413, token=False)
    if not isinstance(data, dict):
        return _json({"status": "invalid", "error": REFUSED}, 400)
    ip = client_ip()
    wait = guard.blocked_for(ip)
    if wait:
        guard.refuse("ip_blocked", form, ip, f"{wait} s left")
        return _refused(wait, BLOCKED)
    reason = guard.spend_token(form, data.get("token"))
    if reason:
        guard.refuse(reason, form, ip)
        return _json({"status": "refused", "error": EXPIRED}, 400)
    wait = _form_limit(form)  # only now: a request without a valid token never counts against it
    if wait:
        guard.refuse("rate_limit_form", form, ip, current_app.config["DONATE_RATE_LIMIT_FORM"])
        return _refused(wait, BUSY, form)
    if guard.honeypot_filled(data):
        guard.refuse("honeypot", form, ip)
        return _json({"status": "refused", "error": REFUSED}, 400)
    if not guard.captcha_passes(data, ip):
        guard.refuse("captcha", form, ip)
        return _json({"status": "refused", "error": CAPTCHA, "errors": {"captcha": CAPTCHA}}, 400, form)
    link = check_donor_link(form, data.get("donor"))
    if link.problem:
        return _json({"status": "invalid", "error": LINK_ON_PAY.format(problem=link.problem)}, 409)
    gift, errors = donations.validate(form, data, link.contact)
    if not data.get("payment_method"):  # the browser could not make one: the card is incomplete
        errors = {**errors, "card": "Enter your card details."}
    if errors:
        if donations.below_minimum(form, errors):
            guard.refuse("below_minimum", form, ip, str(data.get("other_amount") or data.get("amount"))[:50])
        return _json({"status": "invalid", "error": FIX_FIELDS, "errors": errors}, 422, form)
    gift.link_id = link.link.id if link.link is not None else None
    outcome = donations.give(form, gift, ip)
    if outcome.http == 409:  # the donor link was spent meanwhile
        outcome.message = LINK_ON_PAY.format(problem=outcome.message)
    return _outcome(form, outcome, gift=gift)


def _ref_or_error(form, ref: str):
    """The gift a donor's reference names, or the answer that says plainly why not (404 / 410)."""
    found = donations.read_ref(form, ref)
    if found.contribution is not None:
        return found, None
    status = 410 if found.expired else 404
    if _is_json_endpoint():
        return found, (jsonify({"status": "expired" if found.expired else "not_found", "error": found.problem}),
                       status)
    heading = "This page has expired" if found.expired else "Link not valid"
    return found, (render_template("donate/message.html", heading=heading, message=found.problem), status)


@bp.post("/donate/<slug>/pay/<ref>/result")
@csrf.exempt
@public
def result(slug: str, ref: str):
    """After the browser's 3-D Secure step: what Stripe says now (a failure is recorded and counted)."""
    form = _form_or_404(slug)
    found, problem = _ref_or_error(form, ref)
    if problem:
        return problem
    wait = _form_limit(form)  # a genuine reference first, as the payment request's token
    if wait:
        guard.refuse("rate_limit_form", form, client_ip(), current_app.config["DONATE_RATE_LIMIT_FORM"])
        return _refused(wait, BUSY)
    return _outcome(form, donations.check_result(form, found.contribution, client_ip()), ref=ref)


@bp.get("/donate/<slug>/thanks/<ref>")
@public
def thanks(slug: str, ref: str):
    """The donor's confirmation: the first name and email typed for this gift (never a contact's stored ones)."""
    form = _form_or_404(slug)
    found, problem = _ref_or_error(form, ref)
    if problem:
        return problem
    c = found.contribution
    first = found.first_name.split(" ")[0]
    return render_template("donate/thanks.html", form=form, c=c, first_name=first, receipt_to=found.email or None,
                           state=donations.thanks_state(c), reference=donations.reference(c),
                           frequency=donations.frequency_of(c),
                           status_url=url_for("donate.status", slug=slug, ref=ref))


@bp.get("/donate/<slug>/thanks/<ref>/status")
@public
def status(slug: str, ref: str):
    """Polled by the thank-you page until the webhook has completed (or failed) the contribution."""
    form = _form_or_404(slug)
    found, problem = _ref_or_error(form, ref)
    if problem:
        return problem
    return jsonify(donations.state_dict(found.contribution))


@bp.after_request
def no_store(response):
    """Nothing here may be kept by a browser or a shared cache: the pages carry a one-time form token, a donor
    link's stored details, or what a donor gave."""
    response.headers["Cache-Control"] = "no-store"
    return response


# -- refusals by the rate limits, and errors ------------------------------------------------

def _is_json_endpoint() -> bool:
    return request.endpoint in ("donate.pay", "donate.result", "donate.status")


def _breach(reason: str):
    def on_breach(limit: RequestLimit):
        form = public_form((request.view_args or {}).get("slug", ""))
        guard.refuse(reason, form, client_ip(), str(limit.limit))
        wait = retry_after(limit)  # from the limit that refused: a minute's, or the hour's
        message = TOO_MANY.format(wait=wait_words(wait))
        if _is_json_endpoint():
            response = jsonify({"status": "refused", "error": message})
        else:
            response = current_app.make_response(render_template(
                "donate/message.html", heading="Please wait a moment", message=message))
        response.status_code = 429
        response.headers["Retry-After"] = str(wait)
        return response

    return on_breach


@bp.errorhandler(RateLimitExceeded)
def rate_limited(err: RateLimitExceeded):
    if err.response is not None:
        return err.response
    return jsonify({"status": "refused", "error": TOO_MANY.format(wait=wait_words(60))}), 429


@bp.errorhandler(RequestEntityTooLarge)
def too_large(_err):
    if _is_json_endpoint():
        return jsonify({"status": "invalid", "error": REFUSED}), 413
    return render_template("donate/message.html", heading="Form too large", message=REFUSED), 413


@bp.errorhandler(404)
def not_found(_err):
    message = "There is no donation form at this address, or it is closed."
    if _is_json_endpoint():
        return jsonify({"status": "not_found", "error": message}), 404
    return render_template("donate/message.html", heading="Page not found", message=message), 404


def init_app(app: Flask) -> None:
    """Register the blueprint and its per-client rate limits (shared storage; the per-form limit is spent
    inside the views, after the token)."""
    app.register_blueprint(bp)
    for endpoint in ("donate.submit", "donate.pay", "donate.result"):
        limit_body(app, endpoint, "DONATE_MAX_BYTES")
    init_limiter(app)
    cfg = app.config  # read at each request, so a changed setting applies at once

    def setting(name: str):
        return lambda: cfg[name]

    for endpoint in ("donate.page", "donate.submit"):  # off unless configured: each counted view is a write
        limit_view(app, endpoint, lambda: cfg["DONATE_RATE_LIMIT_PAGE"] or "1 per second", key_func=client_network,
                   scope="donate-page-ip", on_breach=_breach("rate_limit_ip"),
                   exempt_when=lambda: not cfg.get("DONATE_RATE_LIMIT_PAGE"))
    for endpoint in ("donate.pay", "donate.result"):
        limit_view(app, endpoint, setting("DONATE_RATE_LIMIT_IP"), key_func=client_network, scope="donate-pay-ip",
                   on_breach=_breach("rate_limit_ip"))
