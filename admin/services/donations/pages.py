"""What the public donation pages answer: the form, its JSON payment endpoint, the 3-D Secure result, the
thank-you page and the refusals (``admin/views/donate.py`` parses the request and renders what these return).

No sign-in. The one-time form token stands in for the session CSRF token: it is issued with the page, good
for one payment request, and a request without a valid one is refused before anything else happens.

Limits: per client (an IPv4 address, an IPv6 /64: ``limiter.network_of``) on every payment request, by
Flask-Limiter around the views (:func:`breach`); per form (all donors together) only on requests that carry
a valid one-time token (or, after 3-D Secure, a genuine reference), spent here, so strangers without one
cannot use up what honest donors share. A refusal says how long to wait, from the limit that refused.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from flask import current_app, url_for

from admin.extensions import db
from admin.limiter import counted_in_session, retry_after, spend, wait_words
from admin.models import Contact, Contribution, DonationForm
from admin.services.donations import give as donations
from admin.services.donations import guard
from admin.services.donations.forms import check_donor_link, frequency_choices, public_form, range_text

EXPIRED = "This form has expired. Reload the page to give."
REFUSED = "We could not accept this form. Reload the page and try again."
TOO_MANY = "Too many attempts from your connection. Please try again in {wait}."
BUSY = "This form is taking too many gifts at once. Please try again in {wait}."
BLOCKED = "Too many failed payments from your connection. Please try again in {wait}."
CAPTCHA = "Please complete the check that you are not a robot."
FIX_FIELDS = "Please correct the marked fields."
NEEDS_JAVASCRIPT = "Card payments on this page need JavaScript: please turn it on and try again."
NOT_FOUND = "There is no donation form at this address, or it is closed."
LINK_ON_PAGE = "{problem} You can still give below."
LINK_ON_PAY = "{problem} Reload the page to give."


@dataclass
class Answer:
    """A JSON answer: its body, HTTP status and, for a refusal by a limit, the seconds to wait."""

    body: dict[str, Any]
    status: int = 200
    retry_after: int | None = None


@dataclass
class Page:
    """The form page: what the template shows, and its status."""

    context: dict[str, Any] = field(default_factory=dict)
    status: int = 200


# -- the form page ---------------------------------------------------------------------------


def _page(
    form: DonationForm,
    *,
    values=None,
    errors=None,
    donor: Contact | None = None,
    donor_token: str = "",
    notice: str | None = None,
    status: int = 200,
) -> Page:
    """The form; ``donor``: the contact of a usable signed donor link (its stored details filled in)."""
    values = dict(values or {})
    if donor is not None and not values:
        first, _, last = (donor.display_name or "").partition(" ")
        values = {"first_name": first, "last_name": last, "email": donor.email or ""}
    return Page(
        {
            "form": form,
            "values": values,
            "errors": errors or {},
            "notice": notice,
            "token": guard.issue_token(form),
            "donor_token": donor_token if donor is not None else "",
            "known_postcode": (donor.postal_code if donor is not None else None) or "",
            "publishable_key": form.processor.publishable_key or "",
            "frequencies": frequency_choices(form),
            "range_text": range_text(form),
            "honeypot": guard.HONEYPOT_FIELD,
        },
        status,
    )


def page(form: DonationForm, donor_token: str | None) -> Page:
    """The form as first shown: a donor link's contact filled in, or why the link cannot be used."""
    link = check_donor_link(form, donor_token)
    notice = LINK_ON_PAGE.format(problem=link.problem) if link.problem else None
    return _page(form, donor=link.contact, donor_token=donor_token or "", notice=notice)


def submitted(form: DonationForm, values: dict[str, str]) -> Page:
    """Without JavaScript: the form checked, with what was typed kept (the card itself needs JavaScript)."""
    link = check_donor_link(form, values.get("donor"))
    _gift, errors = donations.validate(form, values, link.contact)
    notice = None if errors else NEEDS_JAVASCRIPT
    if link.problem:
        notice = LINK_ON_PAGE.format(problem=link.problem)
    return _page(
        form,
        values=values,
        errors=errors,
        donor=link.contact,
        donor_token=values.get("donor", ""),
        notice=notice,
        status=422,
    )


# -- the payment endpoint --------------------------------------------------------------------


def _answer(body: dict, status: int, form: DonationForm | None = None, *, token: bool = True) -> Answer:
    """``body``, with a fresh form token when ``form`` is given (the donor may try again from the page) and
    ``token`` is not false. Refusals of a spent, forged or replayed token, or of a robot, give none."""
    if token and form is not None:
        body["token"] = guard.issue_token(form)
    return Answer(body, status)


def _refused(seconds: int, text: str, form: DonationForm | None = None, *, status: int = 429) -> Answer:
    answer = _answer({"status": "refused", "error": text.format(wait=wait_words(seconds))}, status, form)
    answer.retry_after = seconds
    return answer


def _form_limit(form: DonationForm) -> int:
    """Spend one of the requests every donor to ``form`` shares; seconds to wait when it is used up."""
    return spend(current_app.config["DONATE_RATE_LIMIT_FORM"], f"form:{form.slug}", scope="donate-pay-form")


def too_large() -> Answer:
    return Answer({"status": "invalid", "error": REFUSED}, 413)


def not_found() -> Answer:
    return Answer({"status": "not_found", "error": NOT_FOUND}, 404)


def outcome_answer(
    form: DonationForm, outcome: donations.Outcome, ref: str | None = None, gift: donations.Gift | None = None
) -> Answer:
    """What the browser is told about a gift: its state, where to go next, and why not."""
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
    return _answer(
        body, outcome.http, form, token=outcome.status not in ("succeeded", "requires_action", "unconfirmed")
    )


def pay(form: DonationForm, data: object, ip: str) -> Answer:
    """A payment request from the form's script: every check, cheapest and most shared last, then
    :func:`admin.services.donations.give.give`."""
    if not isinstance(data, dict):
        return _answer({"status": "invalid", "error": REFUSED}, 400)
    wait = guard.blocked_for(ip)
    if wait:
        guard.refuse("ip_blocked", form, ip, f"{wait} s left")
        return _refused(wait, BLOCKED)
    with counted_in_session():  # the spent token and the form's counter: one transaction
        reason = guard.spend_token(form, data.get("token"), commit=False)
        # only with a valid token: a request without one never counts against the form's limit
        wait = 0 if reason else _form_limit(form)
    db.session.commit()
    if reason:
        guard.refuse(reason, form, ip)
        return _answer({"status": "refused", "error": EXPIRED}, 400)
    if wait:
        guard.refuse("rate_limit_form", form, ip, current_app.config["DONATE_RATE_LIMIT_FORM"])
        return _refused(wait, BUSY, form)
    if guard.honeypot_filled(data):
        guard.refuse("honeypot", form, ip)
        return _answer({"status": "refused", "error": REFUSED}, 400)
    if not guard.captcha_passes(data, ip):
        guard.refuse("captcha", form, ip)
        return _answer({"status": "refused", "error": CAPTCHA, "errors": {"captcha": CAPTCHA}}, 400, form)
    link = check_donor_link(form, data.get("donor"))
    if link.problem:
        return _answer({"status": "invalid", "error": LINK_ON_PAY.format(problem=link.problem)}, 409)
    gift, errors = donations.validate(form, data, link.contact)
    if not data.get("payment_method"):  # the browser could not make one: the card is incomplete
        errors = {**errors, "card": "Enter your card details."}
    if errors or gift is None:  # validate gives a gift, or the errors
        if donations.below_minimum(form, errors):
            guard.refuse("below_minimum", form, ip, str(data.get("other_amount") or data.get("amount"))[:50])
        return _answer({"status": "invalid", "error": FIX_FIELDS, "errors": errors}, 422, form)
    gift.link_id = link.link.id if link.link is not None else None
    outcome = donations.give(form, gift, ip)
    if outcome.http == 409:  # the donor link was spent meanwhile
        outcome.message = LINK_ON_PAY.format(problem=outcome.message)
    return outcome_answer(form, outcome, gift=gift)


# -- after 3-D Secure, and the thank-you page ---------------------------------------------------------


def ref_problem(found: donations.DonorRef) -> Answer:
    """Why a donor's reference names no gift, as a JSON answer (the view renders it as a page where needed)."""
    if found.expired:
        return Answer({"status": "expired", "error": found.problem}, 410)
    return Answer({"status": "not_found", "error": found.problem}, 404)


def _named(found: donations.DonorRef) -> Contribution:
    """The gift of a reference that names one: the views answer any other with :func:`ref_problem`."""
    assert found.contribution is not None, "a reference that names no gift reached a page of its gift"
    return found.contribution


def result(form: DonationForm, found: donations.DonorRef, ref: str, ip: str) -> Answer:
    """After the browser's 3-D Secure step: what Stripe says now (a failure is recorded and counted)."""
    wait = _form_limit(form)  # a genuine reference first, as the payment request's token
    if wait:
        guard.refuse("rate_limit_form", form, ip, current_app.config["DONATE_RATE_LIMIT_FORM"])
        return _refused(wait, BUSY)
    return outcome_answer(form, donations.check_result(form, _named(found), ip), ref=ref)


def thanks(form: DonationForm, found: donations.DonorRef, ref: str) -> dict[str, Any]:
    """The donor's confirmation: the first name and email typed for this gift (never a contact's stored ones)."""
    c = _named(found)
    return {
        "form": form,
        "c": c,
        "first_name": found.first_name.split(" ")[0],
        "receipt_to": found.email or None,
        "state": donations.thanks_state(c),
        "reference": donations.reference(c),
        "frequency": donations.frequency_of(c),
        "status_url": url_for("donate.status", slug=form.slug, ref=ref),
    }


def status(found: donations.DonorRef) -> Answer:
    """Polled by the thank-you page until the webhook has completed (or failed) the contribution."""
    return Answer(donations.state_dict(_named(found)))


# -- refusals by the per-client limits -----------------------------------------------------------


def breach(slug: str, reason: str, limit, ip: str) -> Answer:
    """A request refused by a per-client limit: counted; the wait from the limit that refused (a minute's, or
    the hour's)."""
    guard.refuse(reason, public_form(slug), ip, str(limit.limit))
    wait = retry_after(limit)
    return Answer(
        {"status": "refused", "error": TOO_MANY.format(wait=wait_words(wait))}, 429, retry_after=wait
    )


def too_many() -> Answer:
    """A limit refused without saying which (Flask-Limiter gave no response of ours)."""
    return Answer({"status": "refused", "error": TOO_MANY.format(wait=wait_words(60))}, 429, retry_after=60)
