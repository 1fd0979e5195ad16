"""Donation forms: what admins set up (``/forms``, ``forms add|list|link``), and signed donor links.

Amounts are entered in major units ("10,25,50" or "12.50") and kept in minor units.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from flask import current_app, has_request_context, url_for
from itsdangerous import BadSignature, SignatureExpired, URLSafeTimedSerializer
from sqlalchemy import bindparam, select, update
from sqlalchemy.orm import Session, joinedload

from admin.dbutil import immediate, parse_id, rowcount
from admin.errors import ServiceError, check_text
from admin.extensions import db
from admin.models import FREQUENCIES, FREQUENCY_LABELS, Contact, DonationForm, DonorLink, PaymentProcessor
from admin.money import Currency, format_money, largest_charge, parse_money, stripe_currency, to_major
from admin.services.core import audit
from admin.timeutil import utcnow

SLUG_RE = re.compile(r"^[a-z0-9](?:[a-z0-9-]{0,46}[a-z0-9])?$")
MAX_PRESETS = 8


@dataclass
class FormSettings:
    """Everything an admin sets on a form, as entered (amounts as text in major units)."""

    slug: str
    title: str
    processor_id: int | str | None
    currency: str = "usd"
    amounts: str = ""
    frequencies: list[str] | tuple[str, ...] = ("one-off",)
    intro: str | None = None
    allow_other_amount: bool = True
    min_amount: str = "1"
    max_amount: str | None = None
    postcode_field: bool = True
    thank_you_text: str | None = None
    receipts: bool = True
    active: bool = True
    stripe_receipt: bool = False  # Stripe emails the receipt (receipt_email); paydesk sends none


# Each setting as the forms editor and ``forms add`` name it (a ServiceError's ``field`` is the FormSettings
# attribute): every refusal says which setting and why, in the editor's words or as the CLI option.
SETTINGS = {
    "slug": ("Slug", "--slug"),
    "title": ("Title", "--title"),
    "intro": ("Introduction", "--intro"),
    "processor_id": ("Payment processor", "--ppid"),
    "currency": ("Currency", "--currency"),
    "amounts": ("Preset amounts", "--amounts"),
    "min_amount": ("Minimum amount", "--min-amount"),
    "max_amount": ("Maximum amount", "--max-amount"),
    "frequencies": ("Frequencies", "--frequencies"),
    "thank_you_text": ("Thank-you text", "--thank-you-text"),
}
MAX_TEXT = 5000  # introduction and thank-you text


def setting_error(field: str, why: str) -> ServiceError:
    """A refused setting: the message names it as the editor does ("Currency: ..."); ``reason`` is the why."""
    err = ServiceError(f"{SETTINGS[field][0]}: {why}", field=field)
    err.reason = why  # type: ignore[attr-defined]
    return err


def _money(text: str | None, cur: Currency, field: str) -> int | None:
    text = (text or "").strip()
    if not text:
        return None
    try:
        value = parse_money(text, cur.code)
    except ValueError as err:
        raise setting_error(field, str(err)) from None
    if value <= 0:
        raise setting_error(field, "enter an amount above zero")
    if value % cur.step:
        raise setting_error(field, f"{cur.upper} amounts go in steps of {format_money(cur.step, cur.code)}")
    return value


def _plain_text(s: FormSettings, name: str, *, multiline: bool = False) -> str:
    """A text setting, stripped; refused, naming the setting, when it holds a control character (a NUL, an
    escape; a line break in a one-line setting). A browser's line breaks (CR LF) are kept as line breaks."""
    value = getattr(s, name) or ""
    if multiline:
        value = value.replace("\r\n", "\n")
    try:
        return check_text(value, SETTINGS[name][0], name, multiline=multiline)
    except ServiceError as err:
        raise setting_error(name, err.message.split(": ", 1)[1]) from None


def largest_gift(form: DonationForm) -> int:
    """The most one gift on ``form`` may be: its maximum, and never more than Stripe's largest charge in its
    currency (which is the maximum of a form that sets none)."""
    cap = largest_charge(form.currency)
    return min(form.max_amount, cap) if form.max_amount else cap


def _check(s: FormSettings, form: DonationForm | None) -> dict[str, Any]:
    slug = (s.slug or "").strip().lower()
    if not SLUG_RE.match(slug):
        raise setting_error(
            "slug", "use 1-48 lowercase letters, digits and hyphens (it becomes /donate/<slug>)"
        )
    clash = db.session.scalar(select(DonationForm).where(DonationForm.slug == slug))
    if clash is not None and clash is not form:
        raise setting_error("slug", f"a form with the slug {slug!r} exists already")
    title = _plain_text(s, "title")
    if not title or len(title) > 200:
        raise setting_error("title", "enter a title of at most 200 characters")
    texts = {name: _plain_text(s, name, multiline=True) for name in ("intro", "thank_you_text")}
    for name, text in texts.items():
        if len(text) > MAX_TEXT:
            raise setting_error(name, f"at most {MAX_TEXT:,} characters")
    code = _plain_text(s, "currency").lower()
    cur = stripe_currency(code)
    if cur is None:
        shown = f"\u201c{code[:10].upper()}\u201d is not" if code else "enter"
        raise setting_error(
            "currency",
            f"{shown} a currency Stripe charges in: enter its three-letter code, such as usd, eur or gbp",
        )
    from admin.services.settings.processors import get_processor

    try:
        processor: PaymentProcessor = get_processor(s.processor_id)
    except ServiceError as err:
        raise setting_error("processor_id", err.message) from None
    if not processor.publishable_key and (form is None or form.processor_id != processor.id):
        # Without it the donor's card field cannot load ("The card field could not be loaded").
        raise setting_error(
            "processor_id",
            f"{processor.name} has no publishable key, so the card field could "
            f"not load: add it first (processor set {processor.id} "
            "--publishable-key pk_..., or Settings > Processors)",
        )
    amounts: list[int] = []
    for part in [p.strip() for p in (s.amounts or "").split(",") if p.strip()]:
        amount = _money(part, cur, "amounts")
        if amount is not None:  # always: the part is not empty
            amounts.append(amount)
    if len(amounts) > MAX_PRESETS:
        raise setting_error("amounts", f"at most {MAX_PRESETS} preset amounts")
    amounts = sorted(set(amounts))
    if not amounts and not s.allow_other_amount:
        raise setting_error("amounts", "give preset amounts, or allow donors to enter their own")
    cap = cur.max_amount
    min_amount = _money(s.min_amount, cur, "min_amount") or cur.step
    max_amount = _money(s.max_amount, cur, "max_amount")
    if max_amount is not None and max_amount > cap:
        raise setting_error(
            "max_amount", f"Stripe's largest charge in {cur.upper} is {format_money(cap, code)}"
        )
    if min_amount > (max_amount or cap):
        raise setting_error(
            "min_amount",
            "must not be above the maximum"
            if max_amount
            else f"must not be above Stripe's largest charge, {format_money(cap, code)}",
        )
    outside = [a for a in amounts if a < min_amount or a > (max_amount or cap)]
    if outside:
        raise setting_error(
            "amounts",
            f"{format_money(outside[0], code, trim=True)} is outside the minimum and "
            f"maximum ({format_money(min_amount, code)} to "
            f"{format_money(max_amount or cap, code)})",
        )
    frequencies = [f.strip().lower() for f in s.frequencies or () if f and f.strip()]
    unknown = [f for f in frequencies if f not in FREQUENCIES]
    if unknown or not frequencies:
        raise setting_error("frequencies", f"choose from {', '.join(FREQUENCIES)}")
    return {
        "slug": slug,
        "title": title,
        "intro": texts["intro"] or None,
        "processor_id": processor.id,
        "currency": code,
        "amounts": amounts,
        "allow_other_amount": bool(s.allow_other_amount),
        "min_amount": min_amount,
        "max_amount": max_amount,
        "frequencies": [f for f in FREQUENCIES if f in frequencies],  # always in the same order
        "postcode_field": bool(s.postcode_field),
        "thank_you_text": texts["thank_you_text"] or None,
        "receipts": bool(s.receipts),
        "active": bool(s.active),
        "stripe_receipt": bool(s.stripe_receipt),
    }


def create_form(settings: FormSettings) -> DonationForm:
    immediate()
    values = _check(settings, None)
    form = DonationForm(**values)
    db.session.add(form)
    db.session.flush()
    audit.record(
        "form.create",
        object_type="donation_form",
        object_id=str(form.id),
        processor_id=form.processor_id,
        parameters=_audit_params(values),
        commit=False,
    )
    db.session.commit()
    return form


def update_form(form: DonationForm, settings: FormSettings) -> DonationForm:
    immediate()
    values = _check(settings, form)
    changed = {k: v for k, v in values.items() if getattr(form, k) != v}
    for key, value in changed.items():
        setattr(form, key, value)
    audit.record(
        "form.update",
        object_type="donation_form",
        object_id=str(form.id),
        processor_id=form.processor_id,
        parameters=_audit_params(changed),
        commit=False,
    )
    db.session.commit()
    return form


def _audit_params(values: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in values.items() if k not in ("intro", "thank_you_text")}


def settings_of(form: DonationForm) -> FormSettings:
    """A form's settings as the edit page shows them."""
    return FormSettings(
        slug=form.slug,
        title=form.title,
        processor_id=form.processor_id,
        currency=form.currency,
        amounts=", ".join(to_major(a, form.currency, trim=True) for a in form.amounts or []),
        frequencies=list(form.frequencies or []),
        intro=form.intro,
        allow_other_amount=form.allow_other_amount,
        min_amount=to_major(form.min_amount, form.currency, trim=True),
        max_amount=to_major(form.max_amount, form.currency, trim=True) or None,
        postcode_field=form.postcode_field,
        thank_you_text=form.thank_you_text,
        receipts=form.receipts,
        active=form.active,
        stripe_receipt=form.stripe_receipt,
    )


def list_forms() -> list[DonationForm]:
    return list(db.session.scalars(select(DonationForm).order_by(DonationForm.id)))


def get_form(form_id: int | str) -> DonationForm | None:
    pk = parse_id(form_id)
    return db.session.get(DonationForm, pk) if pk is not None else None


_FORMS = DonationForm.__table__
_PROCESSORS = PaymentProcessor.__table__
# Whether a form, or its processor, changed: every change of either sets its updated_at (onupdate).
_STAMP = (
    select(_FORMS.c.id, _FORMS.c.updated_at, _PROCESSORS.c.updated_at)
    .select_from(_FORMS.join(_PROCESSORS, _PROCESSORS.c.id == _FORMS.c.processor_id))
    .where(_FORMS.c.slug == bindparam("slug"))
)


def public_form(slug: str) -> DonationForm | None:
    """The active form at ``/donate/<slug>``; None (so: 404) when unknown or inactive.

    Read-only and detached from the request's session, with its processor: a payment request commits several
    times, and a form kept in the session was read again after each commit (nothing on the public pages
    changes a form; staff pages load theirs with :func:`get_form`). Each request asks the database whether
    the form or its processor changed (one small query on the request's connection); a form read before
    and unchanged since is used again (this app's copy, shared by its threads), otherwise it is read in a
    session of its own."""
    conn = db.session.connection()
    stamp = conn.execute(_STAMP, {"slug": slug}).first()
    if stamp is None:
        return None
    known: dict[str, tuple[tuple, DonationForm]] = current_app.extensions.setdefault(
        "paydesk_public_forms", {}
    )
    cached = known.get(slug)
    if cached is not None and cached[0] == tuple(stamp):
        form: DonationForm | None = cached[1]
    else:
        with Session(bind=conn) as own:  # closed: the form and its processor stay loaded, detached
            form = own.scalar(
                select(DonationForm)
                .where(DonationForm.slug == slug)
                .options(joinedload(DonationForm.processor))
            )
        if form is None:
            return None
        known[slug] = (tuple(stamp), form)
    # A currency Stripe does not take (saved before paydesk checked): closed rather than failing at Stripe.
    return form if form is not None and form.active and stripe_currency(form.currency) else None


def form_dict(form: DonationForm) -> dict[str, Any]:
    return {
        "id": form.id,
        "slug": form.slug,
        "title": form.title,
        "active": form.active,
        "processor_id": form.processor_id,
        "currency": form.currency,
        "amounts": [to_major(a, form.currency, trim=True) for a in form.amounts or []],
        "other_amount": form.allow_other_amount,
        "min_amount": to_major(form.min_amount, form.currency, trim=True),
        "max_amount": to_major(largest_gift(form), form.currency, trim=True),
        "frequencies": list(form.frequencies or []),
        "postcode_field": form.postcode_field,
        "receipts": form.receipts,
        "url": public_url(form),
    }


def public_url(form: DonationForm) -> str:
    """The form's absolute address (``BASE_URL`` + its path), in a request or not (the CLI)."""
    if has_request_context():
        path = url_for("donate.page", slug=form.slug)
    else:
        with current_app.test_request_context():
            path = url_for("donate.page", slug=form.slug)
    return current_app.config["BASE_URL"].rstrip("/") + path


def frequency_choices(form: DonationForm) -> list[tuple[str, str]]:
    return [(f, FREQUENCY_LABELS[f]) for f in form.frequencies or [] if f in FREQUENCY_LABELS]


def range_text(form: DonationForm) -> str:
    return (
        f"{format_money(form.min_amount, form.currency)} to {format_money(largest_gift(form), form.currency)}"
    )


# -- signed donor links: a known contact (and so a known billing postcode) ------------------
#
# A link is made by staff for one contact and one form (``forms link``) and is good for one gift: it is
# spent once a gift through it has reached Stripe (a declined card leaves it usable, so the donor can try
# another card), it ends after ``DONATE_LINK_MAX_AGE`` seconds (default 30 days; read at each use, so a
# shorter setting applies to links already sent), and staff can revoke it from the contact's page.

LINK_INVALID = "This personal donation link is not valid."
LINK_EXPIRED = "This personal donation link has expired."
LINK_REVOKED = "This personal donation link has been withdrawn."
LINK_SPENT = "This personal donation link has been used for a gift already."


@dataclass
class DonorLinkCheck:
    """What a donor link in a request comes to: the link and its contact when it may be used, else the
    message for the donor (``problem``); all None when the request carries no link."""

    link: DonorLink | None = None
    contact: Contact | None = None
    problem: str | None = None


def _link_serializer() -> URLSafeTimedSerializer:
    return URLSafeTimedSerializer(current_app.config["SECRET_KEY"], salt="paydesk-donor-link-v2")


def link_max_age() -> int:
    return int(current_app.config["DONATE_LINK_MAX_AGE"])


def donor_link(form: DonationForm, contact: Contact) -> str:
    """A new link to the form for a known donor: name, email and billing postcode filled in, and the gift
    made with the contact's own Stripe customer. Staff send it to a returning donor, or open it themselves
    to take a gift by phone. One gift, within ``DONATE_LINK_MAX_AGE`` seconds. Commits, with its audit entry."""
    immediate()
    _, actor = audit.current_actor()
    link = DonorLink(contact_id=contact.id, form_id=form.id, created_by=actor[:255])
    db.session.add(link)
    db.session.flush()
    audit.record(
        "donor_link.create",
        object_type="contact",
        object_id=str(contact.id),
        processor_id=form.processor_id,
        parameters={"link": link.id, "form": form.slug},
        commit=False,
    )
    db.session.commit()
    token = _link_serializer().dumps({"l": link.id, "f": form.id})
    return public_url(form) + "?" + "donor=" + token


def check_donor_link(form: DonationForm, token: object) -> DonorLinkCheck:
    """The donor link a request carries (``?donor=`` on the page, ``donor`` in the payment request)."""
    if not token:
        return DonorLinkCheck()
    if not isinstance(token, str):
        return DonorLinkCheck(problem=LINK_INVALID)
    try:
        data = _link_serializer().loads(token, max_age=link_max_age())
    except SignatureExpired:
        return DonorLinkCheck(problem=LINK_EXPIRED)
    except BadSignature:
        return DonorLinkCheck(problem=LINK_INVALID)
    link_id = data.get("l") if isinstance(data, dict) else None
    link = db.session.get(DonorLink, link_id) if isinstance(link_id, int) else None
    if link is None or link.form_id != form.id or data.get("f") != form.id:
        return DonorLinkCheck(problem=LINK_INVALID)
    contact = db.session.get(Contact, link.contact_id)
    if contact is None or contact.is_deleted:
        return DonorLinkCheck(problem=LINK_INVALID)
    if link.revoked_at is not None:
        return DonorLinkCheck(problem=LINK_REVOKED)
    if link.used_at is not None:
        return DonorLinkCheck(problem=LINK_SPENT)
    return DonorLinkCheck(link=link, contact=contact)


def donor_from_link(form: DonationForm, token: str | None) -> Contact | None:
    """The contact a usable donor link names, or None (no link, forged, expired, spent, revoked, another form's)."""
    return check_donor_link(form, token).contact


def claim_link(link_id: int, contribution_id: int) -> bool:
    """Spend a link on a gift, inside the transaction that records the gift; False when another request
    spent it (or staff revoked it) meanwhile."""
    done = db.session.execute(
        update(DonorLink)
        .where(DonorLink.id == link_id, DonorLink.used_at.is_(None), DonorLink.revoked_at.is_(None))
        .values(used_at=utcnow(), contribution_id=contribution_id)
    )
    return rowcount(done) == 1


def release_link(contribution_id: int) -> None:
    """The gift a link was spent on was declined (or never reached Stripe): the link may be used again."""
    db.session.execute(
        update(DonorLink)
        .where(DonorLink.contribution_id == contribution_id)
        .values(used_at=None, contribution_id=None)
    )


def through_link(contribution_id: int) -> bool:
    """Whether a signed donor link was spent on this contribution (the giver is the link's contact)."""
    return (
        db.session.scalar(select(DonorLink.id).where(DonorLink.contribution_id == contribution_id).limit(1))
        is not None
    )


def move_link(old_contribution_id: int, new_contribution_id: int) -> None:
    """The gift a link was spent on is recorded on another contribution (the worker's row for its invoice)."""
    db.session.execute(
        update(DonorLink)
        .where(DonorLink.contribution_id == old_contribution_id)
        .values(contribution_id=new_contribution_id)
    )


@dataclass
class DonorLinkRow:
    link: DonorLink
    state: str  # active | used | revoked | expired
    expires_at: datetime


def links_of(contact: Contact, limit: int = 20) -> list[DonorLinkRow]:
    """The contact's donor links, newest first, each with its state (for the contact's page)."""
    links = db.session.scalars(
        select(DonorLink)
        .where(DonorLink.contact_id == contact.id)
        .options(joinedload(DonorLink.form))
        .order_by(DonorLink.id.desc())
        .limit(limit)
    )
    now, age = utcnow(), timedelta(seconds=link_max_age())
    rows = []
    for link in links:
        expires = link.created_at + age
        state = (
            "revoked"
            if link.revoked_at
            else "used"
            if link.used_at
            else "expired"
            if expires <= now
            else "active"
        )
        rows.append(DonorLinkRow(link, state, expires))
    return rows


def revoke_link(contact: Contact, link_id: int) -> DonorLink:
    """Revoke one of the contact's donor links (staff, on the contact's page). Commits, with its audit entry."""
    immediate()
    link = db.session.get(DonorLink, link_id)
    if link is None or link.contact_id != contact.id:
        db.session.rollback()
        raise ServiceError("this contact has no such donor link")
    if link.revoked_at is not None:
        db.session.rollback()
        raise ServiceError(f"donor link #{link.id} was revoked already")
    _, actor = audit.current_actor()
    link.revoked_at, link.revoked_by = utcnow(), actor[:255]
    audit.record(
        "donor_link.revoke",
        object_type="contact",
        object_id=str(contact.id),
        processor_id=link.form.processor_id if link.form else None,
        parameters={
            "link": link.id,
            "form": link.form.slug if link.form else None,
            "was": "used" if link.used_at else "unused",
        },
        commit=False,
    )
    db.session.commit()
    return link
