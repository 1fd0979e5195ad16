"""Gifts through the public donation form (CiviCRM Stripe's StripePaymentintents.Process, adapted).

The browser has made a PaymentMethod with Stripe.js; :func:`give` then

1. asks Stripe for that PaymentMethod: one Stripe does not know (or will not let this gift use) is
   answered like a declined card and counted against the address, and nothing is made for it;
2. picks the Stripe customer. How records are matched:

   - a signed donor link from staff (``forms link``) names its contact: the gift uses that contact's
     own Stripe customer (the newest one paydesk did not make for an unverified gift), and spends the
     link;
   - otherwise the contact is the one with the typed email (CiviCRM's default rule: case-insensitive,
     the oldest contact that is not deleted), or a new contact. Nothing proves the giver is that contact,
     so the gift gets a **fresh Stripe customer** (linked to the contact, marked ``unverified`` when the
     contact existed already, and never reused): a stranger who knows a donor's email cannot attach a
     card to that donor's customer, change its default card or touch its subscriptions; and the
     contact's stored details are not changed (a new contact takes what was typed);

   the customer is made in Stripe before any write, so no database lock waits on Stripe, with the
   PaymentMethod attached as it is made (a card can be declined here: the customer is then made without it,
   and the gift recorded and declined below, as one declined at attach);
3. commits the contact, the customer link and a Pending contribution (description ``"<form title> <contactID>-<contributionID>"``,
   with the chosen frequency) *before* Stripe can send anything about it, so the webhook always finds it;
4. attaches the PaymentMethod to the contact's own customer (a donor link's; a card can be declined here
   too); a card declined or refused, here or as the customer was made, is a Failed contribution;
5. one-off: creates the PaymentIntent (idempotency key, description, statement descriptor suffix starting
   with the donor's :func:`reference`, metadata), records its id, then confirms it;
   monthly/yearly: makes the card the customer's default and subscribes the customer to the plan
   for that amount, currency and interval (:func:`plan_for`, created once and reused); when Stripe does
   not answer the subscription request, paydesk finds out whether the subscription exists (listing the
   customer's subscriptions, then asking again with the same idempotency key) before it answers;
6. answers ``succeeded`` or ``requires_action`` (the browser runs 3-D Secure with
   ``confirmCardPayment`` and then asks :func:`check_result`), or ``declined``; ``unconfirmed`` when
   Stripe failed after the subscription was made, or paydesk cannot find out whether it was (the donor is
   asked not to try again).

The form never marks a gift paid: the webhook completes the contribution. A declined card marks
it Failed (and counts against the donor's address); Stripe unreachable before the PaymentIntent
exists leaves nothing behind (rolled back, or the Pending contribution deleted again); once a subscription
exists, its contribution stays Pending, linked to it and its first invoice, for the webhook to complete.

Nothing a public answer carries (the JSON, the thank-you page) comes from a matched contact's stored
details: the thank-you page shows the name and email typed for this gift (see :func:`ref_of`), and the
donor's reference holds no contact id unless the gift came through a donor link (see :func:`reference`).
"""

from __future__ import annotations

import base64
import hashlib
import json
import logging
import re
import secrets
import time
from dataclasses import dataclass, field
from typing import Any

from cryptography.fernet import Fernet, InvalidToken
from email_validator import EmailNotValidError, validate_email
from flask import current_app
from sqlalchemy import bindparam, insert, inspect, select, update

from admin.api import feed
from admin.config import VERSION
from admin.dbutil import immediate, insert_ignore, lock_objects, parse_whole
from admin.extensions import db
from admin.models import (
    COMPLETED,
    FAILED,
    FREQUENCIES,
    PENDING,
    Contact,
    Contribution,
    DonationForm,
    DonationPlan,
    StripeCustomer,
    StripePaymentIntent,
)
from admin.money import MAX_MINOR_UNITS, AmountError, format_money, read_amount
from admin.services.core.stripe_reader import StripeReader
from admin.services.donations import guard as donation_guard
from admin.services.donations.forms import (
    LINK_SPENT,
    claim_link,
    largest_gift,
    move_link,
    release_link,
    through_link,
)
from admin.services.intents import queries as intents
from admin.services.records import contributions, recurring
from admin.services.records.contacts import find_by_email, new_contact
from admin.services.records.customer_sync import customer_fields, request_metadata_sync
from admin.stripe_gateway import Gateway, GatewayError
from admin.stripe_shapes import paid_invoice_payment, sid
from admin.timeutil import from_unix, utcnow

log = logging.getLogger(__name__)

SOURCE = "donation form"
PRODUCT_ID = "paydesk_donation"
UNAVAILABLE = "We could not reach our card processor, so nothing was charged. Please try again in a minute."
NOT_CONFIRMED = (
    "We could not confirm your payment with our card processor. Please wait a few minutes "
    "before trying again: if it went through, you will get a receipt."
)
# The subscription exists (so its first payment may well have been taken): another try could make a second one.
SUBSCRIPTION_NOT_CONFIRMED = (
    "Your regular gift is set up, but we could not confirm its first payment with our "
    "card processor yet. Please do not try again: {then} Your reference is {reference}."
)
# Stripe did not answer the subscription request, and could not be asked whether it made it.
SUBSCRIPTION_UNKNOWN = (
    "We could not find out from our card processor whether your regular gift was set up. "
    "Please do not try again for now: {then} Your reference is {reference}."
)
CARD_REFUSED = "Your card details were not accepted. Please enter them again, or use another card."
# Above the form when the card was declined; what the card issuer said goes under the card field, once.
DECLINED = "Your gift did not go through. Please see the message under Card."


@dataclass
class Gift:
    amount: int
    frequency: str
    first_name: str
    last_name: str
    email: str
    postal_code: str | None = None
    address_line1: str | None = None
    city: str | None = None
    payment_method: str | None = None
    contact: Contact | None = None  # from a signed donor link
    link_id: int | None = None  # that link (spent by this gift)

    @property
    def name(self) -> str:
        return f"{self.first_name} {self.last_name}".strip()

    @property
    def interval(self) -> str | None:
        return FREQUENCIES[self.frequency]


@dataclass
class Outcome:
    """What the payment endpoint answers; the view adds URLs and a fresh form token."""

    status: str  # succeeded | requires_action | unconfirmed | declined | invalid | unavailable
    http: int = 200
    message: str | None = None
    errors: dict[str, str] = field(default_factory=dict)
    client_secret: str | None = None
    contribution: Contribution | None = None


# -- validation -------------------------------------------------------------------------


def _text(data: dict, name: str, limit: int = 200) -> str:
    value = data.get(name)
    if isinstance(value, int | float) and not isinstance(value, bool):
        value = str(value)
    return value.strip()[:limit] if isinstance(value, str) else ""


def chosen_amount(form: DonationForm, data: dict, errors: dict[str, str]) -> int | None:
    """The gift's amount: "Other amount" when filled in (read by :func:`admin.money.read_amount`: a decimal
    comma or point, never a guess), else the chosen preset."""
    other = _text(data, "other_amount", 65)  # longer: refused, never cut to a shorter number
    if other and form.allow_other_amount:
        try:
            return read_amount(other, form.currency, label="the other amount")
        except AmountError as err:
            errors["other_amount"] = str(err)
            return None
    preset = parse_whole(_text(data, "amount", 32), 1, MAX_MINOR_UNITS)  # minor units, ASCII digits
    if preset is not None and preset in (form.amounts or []):
        return preset
    errors["amount"] = "Choose an amount" + (" or enter another amount." if form.allow_other_amount else ".")
    return None


def validate(
    form: DonationForm, data: dict, donor: Contact | None = None
) -> tuple[Gift | None, dict[str, str]]:
    """Check a submitted form (again, whatever the browser checked); (gift, {}) or (None, errors by field)."""
    errors: dict[str, str] = {}
    amount = chosen_amount(form, data, errors)
    if amount is not None:
        field_name = "other_amount" if _text(data, "other_amount") and form.allow_other_amount else "amount"
        largest = largest_gift(form)
        if amount < form.min_amount:
            errors[field_name] = (
                f"The smallest gift this form takes is {format_money(form.min_amount, form.currency)}."
            )
        elif amount > largest:
            errors[field_name] = (
                f"The largest gift this form takes is {format_money(largest, form.currency)}."
            )
    frequency = _text(data, "frequency", 16)
    if frequency not in (form.frequencies or []):
        if len(form.frequencies or []) == 1 and not frequency:
            frequency = form.frequencies[0]
        else:
            errors["frequency"] = "Choose how often to give."
    first, last = _text(data, "first_name", 100), _text(data, "last_name", 100)
    if not first:
        errors["first_name"] = "Enter your first name."
    if not last:
        errors["last_name"] = "Enter your last name."
    email = _text(data, "email", 255)
    try:
        email = validate_email(email, check_deliverability=False).normalized
    except EmailNotValidError:
        errors["email"] = "Enter an email address such as name@example.org."
    postal = _text(data, "postal_code", 32) or None
    payment_method = _text(data, "payment_method", 255) or None
    if payment_method is not None and not re.fullmatch(r"pm_[A-Za-z0-9_]+", payment_method):
        errors["card"] = "Enter your card details again."
    if errors or amount is None:  # no amount always comes with its error
        return None, errors
    return Gift(
        amount=amount,
        frequency=frequency,
        first_name=first,
        last_name=last,
        email=email,
        postal_code=postal,
        address_line1=_text(data, "address_line1") or None,
        city=_text(data, "city", 100) or None,
        payment_method=payment_method,
        contact=donor,
    ), {}


def below_minimum(form: DonationForm, errors: dict[str, str]) -> bool:
    return any(msg.startswith("The smallest gift") for msg in errors.values())


# -- references in URLs --------------------------------------------------------------------
#
# The donor's own URLs (thank-you page, its status, the 3-D Secure result) carry a reference: the
# contribution's id and what the donor typed that the thank-you page shows (first name, and the address the
# receipt goes to), encrypted (so no log or history holds them) with a key derived from SECRET_KEY, and
# good for ``DONATE_THANKS_MAX_AGE`` seconds. The page never greets from a contact's stored details: a
# stranger who typed a known donor's email sees the name they typed, as every other donor does.

REF_INVALID = "This link to a gift is not valid. Check that it was copied whole."
REF_EXPIRED = (
    "This page about your gift has expired. If your gift went through, your receipt has the details."
)


@dataclass
class DonorRef:
    """What a reference in a donor's URL comes to: the contribution and what the page may show, or why not."""

    contribution: Contribution | None
    first_name: str = ""
    email: str = ""
    problem: str | None = None  # REF_INVALID | REF_EXPIRED
    expired: bool = False


def _ref_box() -> Fernet:
    digest = hashlib.sha256(
        b"paydesk-donation-ref:" + str(current_app.config["SECRET_KEY"]).encode()
    ).digest()
    return Fernet(base64.urlsafe_b64encode(digest))


def ref_of(c: Contribution, gift: Gift | None = None) -> str:
    """An unguessable, expiring handle on a contribution for the donor's own URLs, carrying what the donor
    typed in ``gift`` for the thank-you page (for a donor link's gift, the contact's address: the receipt's)."""
    email = ((gift.contact.email if gift.contact is not None else None) or gift.email) if gift else ""
    data = {"c": c.id, "n": gift.first_name[:100] if gift else "", "e": (email or "")[:255]}
    return _ref_box().encrypt(json.dumps(data, separators=(",", ":")).encode()).decode()


def read_ref(form: DonationForm, ref: str) -> DonorRef:
    box = _ref_box()
    try:
        data = json.loads(box.decrypt(ref.encode("ascii")))
        issued = box.extract_timestamp(ref.encode("ascii"))
    except (InvalidToken, ValueError, UnicodeError):
        return DonorRef(None, problem=REF_INVALID)
    if time.time() - issued > int(current_app.config["DONATE_THANKS_MAX_AGE"]):
        return DonorRef(None, problem=REF_EXPIRED, expired=True)
    cid = data.get("c") if isinstance(data, dict) else None
    c = db.session.get(Contribution, cid) if isinstance(cid, int) and not isinstance(cid, bool) else None
    if c is None or c.donation_form_id != form.id:
        return DonorRef(None, problem=REF_INVALID)
    return DonorRef(c, first_name=str(data.get("n") or ""), email=str(data.get("e") or ""))


def contribution_of(form: DonationForm, ref: str) -> Contribution | None:
    return read_ref(form, ref).contribution


def reference(c: Contribution, via_link: bool | None = None) -> str:
    """The reference a donor quotes (thank-you page, messages, receipt, card statement).

    CiviCRM's ``<contactID>-<contributionID>`` where the giver is known to be the contact: a gift through a
    signed donor link, or one that did not come from the public form. A gift from the public form without
    that proof shows the contribution's id alone: its contact was matched by a typed email, so the contact's
    id is not the giver's to learn. Staff's Stripe description keeps ``<contactID>-<contributionID>``.
    ``via_link``: whether a donor link was spent on it, when the caller knows (else it is looked up)."""
    if c.donation_form_id is not None and not (through_link(c.id) if via_link is None else via_link):
        return str(c.id)
    return f"{c.contact_id}-{c.id}"


def _public_description(form: DonationForm, ref: str) -> str:
    """The PaymentIntent's description: a browser holding its client secret (3-D Secure) can read it, so it
    carries the donor's :func:`reference` ``ref``, never a matched contact's id (that stays in the metadata,
    which a publishable key cannot read, and in the contribution's own description for staff)."""
    return f"{form.title} {ref}"[:500]


# -- the payment ---------------------------------------------------------------------------


def _is_decline(err: GatewayError) -> bool:
    return err.http_status == 402 or err.kind == "card_error"


def decline_message(message: str | None) -> str:
    text = (message or "Your card was declined.").strip()
    return text if "declined" in text.lower() or text == CARD_REFUSED else f"Payment declined: {text}"


def declined(text: str, c: Contribution | None = None) -> Outcome:
    """The answer for a declined or refused card: why, under the card field; above the form, where to look."""
    return Outcome("declined", 402, DECLINED, errors={"card": text}, contribution=c)


def _contact(form: DonationForm, gift: Gift) -> tuple[Contact, bool]:
    """The gift's contact, and whether this gift made it. A contact matched by the typed email keeps its
    stored details: nothing proves the giver is that contact. The contact of a donor link (staff sent it to
    that donor) takes what was typed where it has nothing stored."""
    if gift.contact is not None:
        contact = gift.contact
        if not contact.display_name or contact.display_name == contact.email:
            contact.display_name = gift.name
        contact.email = contact.email or gift.email
        contact.postal_code = contact.postal_code or gift.postal_code  # the card element's postcode
        return contact, False
    known = find_by_email(gift.email)
    if known is not None:
        return known, False
    contact = new_contact(
        gift.name, gift.email, gift.postal_code, source=SOURCE
    )  # the card element's postcode; written with the gift's contribution (one flush)
    return contact, True


def _own_customer(form: DonationForm, contact: Contact) -> str | None:
    """The contact's own Stripe customer on the form's processor (for a gift through a donor link): the
    newest live one that was not made for an unverified gift."""
    return db.session.scalar(
        select(StripeCustomer.customer_id)
        .where(
            StripeCustomer.contact_id == contact.id,
            StripeCustomer.processor_id == form.processor_id,
            StripeCustomer.deleted.is_(False),
            StripeCustomer.unverified.is_(False),
        )
        .order_by(StripeCustomer.id.desc())
        .limit(1)
    )


def _new_customer(
    gw: Gateway, form: DonationForm, gift: Gift, attempt: str
) -> tuple[str, GatewayError | None]:
    """A Stripe customer for this gift, made before anything is written (so no lock is held meanwhile), with
    the gift's card attached as it is made (one request where there were two); and None, or why the card
    could not be attached.

    When Stripe answers that it will not attach the card (declined, or refused), the customer is made again
    without it, as it was before the card was attached separately: the gift is then recorded and declined as
    a card refused at attach always was (a Failed contribution, one more failure for the address). Raises
    ``GatewayError`` when Stripe makes no customer (unreachable, or refusing the customer itself).

    It carries what was typed (or, for a donor link, the contact's details); the contact's id reaches its
    metadata through the usual metadata push, queued in the transaction that links it.
    """
    if gift.contact is not None:
        params = customer_fields(gift.contact)
    else:
        site = current_app.config["SITE_NAME"]
        params = {
            "name": gift.name,
            "email": gift.email,
            "description": f"paydesk: {site}",
            "metadata": {"site_name": site, "paydesk_version": VERSION},
        }
    known_postcode = gift.contact.postal_code if gift.contact is not None else None
    address = {
        k: v
        for k, v in (
            ("line1", gift.address_line1),
            ("city", gift.city),
            ("postal_code", gift.postal_code or known_postcode),
        )
        if v
    }
    if address:
        params["address"] = address
    try:
        with_card = {**params, "payment_method": gift.payment_method}
        made = gw.create("customers", with_card, idempotency_key=f"paydesk-donate-customer-{attempt}-card")
        return made["id"], None
    except GatewayError as err:
        if err.transient:
            raise  # Stripe could not be asked (after retries): nothing is made, as before
        refused = err
    made = gw.create("customers", params, idempotency_key=f"paydesk-donate-customer-{attempt}")
    return made["id"], refused


def _card_refused(form: DonationForm, gift: Gift, gw: Gateway, client_ip: str | None) -> Outcome | None:
    """None when Stripe knows the gift's PaymentMethod and it may be used; else the answer (a refused
    card, counted against the address like a decline, with nothing made for it)."""
    assert gift.payment_method is not None, "a gift is taken only with its PaymentMethod (pages.pay)"
    try:
        pm = gw.retrieve("payment_methods", gift.payment_method)
    except GatewayError as err:
        if err.transient:
            log.warning(
                "donation form %s: Stripe unavailable before anything was recorded: %s", form.slug, err
            )
            return Outcome("unavailable", 503, UNAVAILABLE)
        detail = f"payment method {gift.payment_method} refused: {err.code or err.http_status or err.message}"
    else:
        if pm.get("type") == "card" and not sid(pm.get("customer")):
            return None
        detail = f"payment method {gift.payment_method} is {pm.get('type')}" + (
            ", attached to a customer already" if sid(pm.get("customer")) else ""
        )
    db.session.rollback()
    donation_guard.payment_failed(form, client_ip, detail[:200])
    return declined(CARD_REFUSED)


def _suffix(ref: str, title: str) -> str:
    """Statement descriptor suffix: the donor's :func:`reference` ``ref``, then part of the title."""
    text = re.sub(r"[^A-Za-z0-9 .-]", "", f"{ref} {title}")
    return re.sub(r"\s+", " ", text)[:22].strip()


def give(form: DonationForm, gift: Gift, client_ip: str | None) -> Outcome:
    """Take the gift: see the module docstring. Commits."""
    gw = Gateway.for_processor(form.processor)
    attempt = secrets.token_hex(6)  # part of every idempotency key of this attempt
    refused = _card_refused(form, gift, gw, client_ip)
    if refused is not None:
        return refused
    customer_id = _own_customer(form, gift.contact) if gift.contact is not None else None
    new_customer = customer_id is None
    not_attached: GatewayError | None = None  # why a new customer was made without the card
    if customer_id is None:
        try:
            customer_id, not_attached = _new_customer(gw, form, gift, attempt)
        except GatewayError as err:
            db.session.rollback()
            log.warning(
                "donation form %s: Stripe unavailable before anything was recorded: %s", form.slug, err
            )
            return Outcome("unavailable", 503, UNAVAILABLE)
    immediate()  # one short write transaction: contact, customer link, Pending contribution
    # The new rows are written by Core INSERTs (no ORM flush; nothing in this request reads them back) and
    # their objects kept as written: from here on this request writes the contribution only by its id, and
    # reads it afresh wherever its state decides anything (declined, withdrawn, recorded).
    contact, made_now = _contact(form, gift)
    if made_now:
        db.session.expunge(contact)  # made by new_contact: written here
        _insert(contact)
    contact_id = contact.id
    c = Contribution(
        processor_id=form.processor_id,
        contact_id=contact_id,
        amount=gift.amount,
        currency=form.currency,
        status=PENDING,
        customer_id=customer_id,
        receive_date=utcnow(),
        source=SOURCE,
        donation_form_id=form.id,
        frequency=gift.frequency,
    )
    _insert(c)
    if new_customer:
        link = StripeCustomer(
            customer_id=customer_id,
            contact_id=contact_id,
            processor_id=form.processor_id,
            unverified=gift.contact is None and not made_now,
        )
        _insert(link)
        feed.note(db.session(), feed.customer_row(link))
        request_metadata_sync(form.processor_id, customer_id, contact)
    c.description = f"{form.title} {contact_id}-{c.id}"[:500]
    _write_contribution(c.id, description=c.description)
    if gift.link_id is not None and not claim_link(gift.link_id, c.id):
        db.session.rollback()  # spent by another request meanwhile, or revoked
        return Outcome("invalid", 409, LINK_SPENT)
    db.session.commit()  # before Stripe hears of it: its webhooks must find this row

    ref = reference(c, via_link=gift.link_id is not None)
    metadata = {
        "contact_id": str(contact_id),
        "contribution_id": str(c.id),
        "form": form.slug,
        "source": "paydesk donation form",
    }
    try:
        if not_attached is not None:
            raise not_attached
        if not new_customer:  # the contact's own customer (a donor link): the card is attached to it now
            gw.call(
                "payment_methods",
                "attach",
                gift.payment_method,
                params={"customer": customer_id},
                idempotency_key=f"paydesk-donate-{c.id}-{attempt}-attach",
            )
    except GatewayError as err:
        if not err.transient and err.http_status in (400, 404) and not _is_decline(err):
            return _declined(form, c, CARD_REFUSED, client_ip)  # Stripe would not take this card
        return _failed_before_intent(form, c, err, client_ip)
    try:
        if gift.interval is not None:
            return _subscribe(gw, form, gift, c, customer_id, metadata, attempt, client_ip)
        pi = gw.create(
            "payment_intents",
            {
                "amount": gift.amount,
                "currency": form.currency,
                "customer": customer_id,
                "payment_method": gift.payment_method,
                "payment_method_types": ["card"],
                "description": _public_description(form, ref),
                "statement_descriptor_suffix": _suffix(ref, form.title),
                "metadata": metadata,
                **({"receipt_email": gift.email} if form.stripe_receipt and gift.email else {}),
            },
            idempotency_key=f"paydesk-donate-{c.id}-{attempt}-intent",
        )
    except GatewayError as err:
        return _failed_before_intent(form, c, err, client_ip)
    _track_intent(form, c, pi)
    try:
        pi = gw.call(
            "payment_intents", "confirm", pi["id"], idempotency_key=f"paydesk-donate-{c.id}-{attempt}-confirm"
        )
    except GatewayError as err:
        if _is_decline(err):
            return _declined(form, c, err.message, client_ip)
        log.warning("donation form %s: confirming %s failed: %s", form.slug, pi["id"], err)
        return Outcome("unavailable", 503, NOT_CONFIRMED, contribution=c)
    return _after_confirm(form, c, pi, client_ip)


def _track_intent(form: DonationForm, c: Contribution, pi: dict) -> None:
    """Record the intent on the contribution (and in stripe_paymentintent) before it is confirmed: one
    UPDATE, and the tracked intent written whole by one INSERT .. ON CONFLICT DO NOTHING (no lookup first,
    no ORM flush); when the worker tracks it already (payment_intent.created), that row is brought up to
    date instead."""
    immediate()
    lock_objects([pi["id"]])  # the worker may be handling payment_intent.created right now
    _write_contribution(c.id, payment_intent_id=pi["id"])
    created = from_unix(pi.get("created")) or utcnow()
    # filled by sync_intent as any new tracked intent is, but not added to the session: written below
    row = StripePaymentIntent(stripe_intent_id=pi["id"], processor_id=form.processor_id, created_date=created)
    _known(row, form, c)
    intents.sync_intent(form.processor, pi, stamp=0, row=row)
    description = (pi.get("description") or c.description or "")[:255] or None
    row.description = description
    if not insert_ignore(StripePaymentIntent, _column_values(row), ["stripe_intent_id"]):
        tracked = intents.by_intent_id(pi["id"])
        assert tracked is not None, "a conflict on stripe_intent_id is a tracked intent"
        _known(tracked, form, c)
        tracked = intents.sync_intent(form.processor, pi, stamp=0, row=tracked)
        if tracked.description != description:
            tracked.description = description
    db.session.commit()


def _known(row: StripePaymentIntent, form: DonationForm, c: Contribution) -> None:
    """What the gift knows of its intent (so sync_intent looks neither up)."""
    row.contribution_id, row.contact_id, row.identifier = c.id, c.contact_id, form.slug


def _column_values(row: Any) -> dict[str, Any]:
    """The columns set on a new (transient) row, for a Core INSERT (the others take their defaults)."""
    columns = type(row).__table__.c
    return {key: value for key, value in inspect(row).dict.items() if key in columns}


_INSERTS: dict[Any, Any] = {}  # by table: its INSERT .. RETURNING id, built once


def _insert(row: Any) -> None:
    """Write a new (transient) row by one Core INSERT of the columns set on it, and give it its id. The
    session's flush listeners do not see it (the caller feeds what must be fed: :func:`give`)."""
    table = type(row).__table__
    stmt = _INSERTS.get(table)
    if stmt is None:
        stmt = _INSERTS[table] = insert(table).returning(table.c.id)
    row.id = db.session.connection().execute(stmt, _column_values(row)).scalar_one()


_UPDATES: dict[tuple[str, ...], Any] = {}  # by the columns set: the UPDATE, built once


def _write_contribution(contribution_id: int, **values: Any) -> None:
    """Columns of a contribution this request holds detached (see :func:`give`), by one UPDATE in the
    session's transaction (no record change that notifies or feeds anything goes this way)."""
    columns = tuple(sorted(values))
    stmt = _UPDATES.get(columns)
    if stmt is None:
        table = Contribution.__table__
        stmt = _UPDATES[columns] = (
            update(table)
            .where(table.c.id == bindparam("row_id"))
            .values({name: bindparam(f"new_{name}") for name in (*columns, "updated_at")})
        )
    params = {f"new_{name}": value for name, value in values.items()}
    db.session.connection().execute(stmt, {**params, "row_id": contribution_id, "new_updated_at": utcnow()})


def _after_confirm(form: DonationForm, c: Contribution, pi: dict, client_ip: str | None) -> Outcome:
    status = pi.get("status")
    if status in ("succeeded", "processing", "requires_capture"):
        return Outcome("succeeded", contribution=c)
    if status == "requires_action":
        return Outcome("requires_action", client_secret=pi.get("client_secret"), contribution=c)
    return _declined(form, c, (pi.get("last_payment_error") or {}).get("message"), client_ip)


def _failed_before_intent(
    form: DonationForm, c: Contribution, err: GatewayError, client_ip: str | None
) -> Outcome:
    if _is_decline(err):
        return _declined(form, c, err.message, client_ip)
    _withdraw(c)
    log.warning("donation form %s: Stripe unavailable, contribution %s withdrawn: %s", form.slug, c.id, err)
    return Outcome("unavailable", 503, UNAVAILABLE)


def _withdraw(c: Contribution) -> None:
    """Stripe unreachable before a PaymentIntent (or subscription) exists: take the contribution back (and
    give back the donor link it spent)."""
    db.session.rollback()
    immediate()
    stale = db.session.get(Contribution, c.id)
    if stale is not None and stale.status == PENDING and not stale.payment_intent_id and not stale.invoice_id:
        release_link(stale.id)
        db.session.delete(stale)
    db.session.commit()


def _declined(form: DonationForm, c: Contribution, message: str | None, client_ip: str | None) -> Outcome:
    """The card was declined (or failed 3-D Secure): a Failed contribution, and one more failure for the address.
    A donor link spent on it may be used again (with another card)."""
    text = decline_message(message)
    immediate()
    c = db.session.get_one(Contribution, c.id)
    contributions.fail(c, text)
    release_link(c.id)
    db.session.commit()
    donation_guard.payment_failed(form, client_ip, f"contribution {c.id}: {message or 'declined'}")
    return declined(text, c)


# -- monthly and yearly ---------------------------------------------------------------------


def plan_for(gw: Gateway, form: DonationForm, amount: int, interval: str) -> str:
    """The Stripe plan for this amount, currency and interval: made once per processor, then reused."""
    key = {
        "processor_id": form.processor_id,
        "currency": form.currency,
        "amount": amount,
        "interval": interval,
        "interval_count": 1,
    }
    known = db.session.scalar(select(DonationPlan.plan_id).filter_by(**key))
    if known:
        return known
    _ensure(gw, "products", PRODUCT_ID, {"id": PRODUCT_ID, "name": "Donation", "type": "service"})
    plan_id = f"paydesk_donation_{interval}_{amount}_{form.currency}"
    label = {"month": "Monthly", "year": "Yearly"}.get(interval, interval)
    _ensure(
        gw,
        "plans",
        plan_id,
        {
            "id": plan_id,
            "product": PRODUCT_ID,
            "amount": amount,
            "currency": form.currency,
            "interval": interval,
            "nickname": f"{label} donation {format_money(amount, form.currency)}",
        },
    )
    immediate()
    insert_ignore(
        DonationPlan,
        {**key, "plan_id": plan_id, "product_id": PRODUCT_ID, "created_at": utcnow()},
        ["processor_id", "currency", "amount", "interval", "interval_count"],
    )
    db.session.commit()
    return plan_id


def _ensure(gw: Gateway, resource: str, obj_id: str, params: dict) -> None:
    """Retrieve ``obj_id``, creating it when Stripe has none (another process may win the race)."""
    try:
        gw.retrieve(resource, obj_id)
        return
    except GatewayError as err:
        if not err.not_found:
            raise
    try:
        gw.create(resource, params, idempotency_key=f"paydesk-{resource}-{obj_id}")
    except GatewayError:
        gw.retrieve(resource, obj_id)  # made by someone else meanwhile; anything else raises here


def first_invoice_intent(gw: Gateway, reader: StripeReader, invoice: dict) -> dict | None:
    """The PaymentIntent paying a subscription's first invoice, in either API shape."""
    pi_ref = invoice.get("payment_intent")
    if pi_ref is None and "payment_intent" not in invoice:  # current API versions: through InvoicePayments
        pi_ref = paid_invoice_payment(reader.list_optional("invoice_payments", invoice=invoice["id"]) or [])[
            1
        ]
    if isinstance(pi_ref, dict):
        return pi_ref
    return gw.retrieve("payment_intents", pi_ref) if pi_ref else None


def _subscribe(
    gw: Gateway,
    form: DonationForm,
    gift: Gift,
    c: Contribution,
    customer_id: str,
    metadata: dict,
    attempt: str,
    client_ip: str | None,
) -> Outcome:
    interval = gift.interval
    assert interval is not None, "only a regular gift is subscribed"
    gw.update("customers", customer_id, {"invoice_settings": {"default_payment_method": gift.payment_method}})
    plan_id = plan_for(gw, form, gift.amount, interval)
    params = {
        "customer": customer_id,
        "items": [{"plan": plan_id}],
        "metadata": metadata,
        "expand": ["latest_invoice"],
    }
    key = f"paydesk-donate-{c.id}-{attempt}-subscription"
    sub: dict | None
    try:
        sub = gw.create("subscriptions", params, idempotency_key=key)
    except GatewayError as err:
        if not err.transient:
            raise  # Stripe answered: no subscription was made
        sub = _find_subscription(gw, form, c, params, key, err)
        if sub is None:
            return _subscription_unknown(form, c)
    reader = StripeReader(form.processor, gw)
    try:  # from here on Stripe may have charged the donor: no failure may withdraw the contribution
        return _first_payment(gw, form, c, reader, sub, client_ip)
    except GatewayError as err:
        return _subscription_not_confirmed(form, c, reader, sub, err)


def _find_subscription(
    gw: Gateway, form: DonationForm, c: Contribution, params: dict, key: str, err: GatewayError
) -> dict | None:
    """Stripe did not answer the request that makes the subscription (after retries): it may have made it.
    Look for it among the customer's subscriptions (by the contribution id in its metadata); when Stripe says
    there is none, ask once more with the same idempotency key (Stripe answers as it did the first time, or
    makes it now). The subscription, or None when Stripe still cannot tell."""
    log.warning(
        "donation form %s: no answer to the subscription request for contribution %s: %s",
        form.slug,
        c.id,
        err,
    )
    try:
        listed = gw.list("subscriptions", customer=params["customer"], status="all", limit=100)
    except GatewayError as again:
        log.warning(
            "donation form %s: could not look for the subscription of contribution %s: %s",
            form.slug,
            c.id,
            again,
        )
        return None
    for sub in listed.get("data") or []:
        if str((sub.get("metadata") or {}).get("contribution_id")) == str(c.id):
            return sub
    try:
        return gw.create("subscriptions", params, idempotency_key=key)
    except GatewayError as again:
        if not again.transient:
            raise
        log.warning(
            "donation form %s: still no answer about the subscription of contribution %s: %s",
            form.slug,
            c.id,
            again,
        )
        return None


def _subscription_unknown(form: DonationForm, c: Contribution) -> Outcome:
    """Whether Stripe made the subscription cannot be found out now: keep the Pending contribution (its
    invoice's webhook finds it by the contribution id in the subscription's metadata), keep the donor link
    spent, and tell the donor just that."""
    db.session.rollback()
    c = db.session.get_one(Contribution, c.id)
    then = (
        "if it was, we will email you a receipt."
        if receipts_wanted(c)
        else "please get in touch with us before giving again."
    )
    return Outcome(
        "unconfirmed", 202, SUBSCRIPTION_UNKNOWN.format(then=then, reference=reference(c)), contribution=c
    )


def _first_payment(
    gw: Gateway, form: DonationForm, c: Contribution, reader: StripeReader, sub: dict, client_ip: str | None
) -> Outcome:
    """What became of a new subscription's first invoice: recorded, then answered as for a one-off gift."""
    latest = sub.get("latest_invoice")  # expanded, unless the subscription was found after a lost answer
    if not isinstance(latest, dict):
        latest_id = sid(latest)
        assert latest_id is not None, "a new subscription always has its first invoice"
        latest = gw.retrieve("invoices", latest_id)
    invoice = latest
    try:
        pi = first_invoice_intent(gw, reader, invoice)
    except GatewayError as err:
        log.warning(
            "donation form %s: subscription %s made, its payment not read: %s", form.slug, sub["id"], err
        )
        pi = None
    c = _record_subscription(form, c, reader, sub, invoice, pi)
    if invoice.get("status") == "paid" or (pi or {}).get("status") in ("succeeded", "processing"):
        return Outcome("succeeded", contribution=c)
    if pi is not None and pi.get("status") == "requires_action":
        return Outcome("requires_action", client_secret=pi.get("client_secret"), contribution=c)
    if pi is None:
        return Outcome("succeeded", contribution=c)  # the thank-you page waits for the invoice's events
    _cancel_subscription(gw, form, sub["id"])
    return _declined(form, c, (pi.get("last_payment_error") or {}).get("message"), client_ip)


def _subscription_not_confirmed(
    form: DonationForm, c: Contribution, reader: StripeReader, sub: dict, err: GatewayError
) -> Outcome:
    """Stripe failed after making the subscription: keep the Pending contribution, linked to the subscription
    and (by its id, which the subscription names) its first invoice, so the invoice's webhook completes this
    contribution; and ask the donor not to give again."""
    db.session.rollback()
    log.warning(
        "donation form %s: subscription %s made, then Stripe failed: %s; contribution %s left Pending "
        "for its webhook",
        form.slug,
        sub["id"],
        err,
        c.id,
    )
    try:  # a new subscription always has its first invoice; only its id is needed to find this contribution
        c = _record_subscription(form, c, reader, sub, {"id": sid(sub.get("latest_invoice"))}, None)
    except GatewayError as again:  # the contact of a customer unknown here: the worker records it all later
        db.session.rollback()
        log.warning("donation form %s: subscription %s not recorded yet: %s", form.slug, sub["id"], again)
        c = db.session.get_one(Contribution, c.id)
    then = (
        "we will email you a receipt once it is confirmed."
        if receipts_wanted(c)
        else "it will be confirmed shortly."
    )
    return Outcome(
        "unconfirmed",
        202,
        SUBSCRIPTION_NOT_CONFIRMED.format(then=then, reference=reference(c)),
        contribution=c,
    )


def _record_subscription(
    form: DonationForm, c: Contribution, reader: StripeReader, sub: dict, invoice: dict, pi: dict | None
) -> Contribution:
    """The recurring contribution, and this contribution as its first instalment (trxn_id = invoice id)."""
    immediate()
    lock_objects([k for k in (sub["id"], invoice["id"], (pi or {}).get("id")) if k])
    recur = recurring.sync_subscription(
        reader, form.processor, {**sub, "latest_invoice": invoice["id"]}, stamp=0
    )
    recur.donation_form_id = form.id
    c = db.session.get_one(Contribution, c.id)
    first = contributions.by_invoice(form.processor_id, invoice["id"])
    if first is not None and first.id != c.id:  # the worker recorded the invoice first: keep its row
        first.donation_form_id = form.id
        first.description = c.description
        first.frequency = c.frequency
        move_link(c.id, first.id)
        db.session.delete(c)
        c = first
    c.invoice_id = c.trxn_id = invoice["id"]
    c.recur_id = recur.id
    if pi is not None:
        c.payment_intent_id = c.payment_intent_id or pi["id"]
        row = intents.sync_intent(form.processor, pi, stamp=0)
        row.contribution_id, row.contact_id, row.identifier = c.id, c.contact_id, form.slug
    db.session.commit()
    return c


def _cancel_subscription(gw: Gateway, form: DonationForm, subscription_id: str) -> None:
    """A first payment that failed leaves an incomplete subscription: end it (its webhook cancels the recur)."""
    try:
        gw.call("subscriptions", "cancel", subscription_id)
    except GatewayError as err:
        log.warning(
            "donation form %s: could not cancel incomplete subscription %s: %s",
            form.slug,
            subscription_id,
            err,
        )


# -- after 3-D Secure -----------------------------------------------------------------------


def check_result(form: DonationForm, c: Contribution, client_ip: str | None) -> Outcome:
    """What became of the payment after the browser's 3-D Secure step, as Stripe has it now."""
    if c.status == FAILED:
        return declined(decline_message(c.failure_message), c)
    if c.status == COMPLETED or not c.payment_intent_id:
        return Outcome("succeeded", contribution=c)
    gw = Gateway.for_processor(form.processor)
    try:
        pi = gw.retrieve("payment_intents", c.payment_intent_id)
    except GatewayError as err:
        log.warning("donation form %s: reading %s failed: %s", form.slug, c.payment_intent_id, err)
        return Outcome("unavailable", 503, NOT_CONFIRMED, contribution=c)
    if pi.get("status") in ("requires_payment_method", "canceled"):
        if c.recur is not None:
            _cancel_subscription(gw, form, c.recur.subscription_id)
        return _declined(form, c, (pi.get("last_payment_error") or {}).get("message"), client_ip)
    return _after_confirm(form, c, pi, client_ip)


# -- the thank-you page and receipts -----------------------------------------------------------


def thanks_state(c: Contribution) -> str:
    """waiting | done | failed: what the thank-you page shows."""
    if c.status == PENDING:
        return "waiting"
    return "failed" if c.status in (FAILED, "Cancelled") else "done"


def frequency_of(c: Contribution) -> str:
    """How often: the subscription's interval, else what the donor chose on the form."""
    interval = c.recur.interval if c.recur is not None else FREQUENCIES.get(c.frequency or "")
    return {"month": "Monthly", "year": "Yearly", "week": "Weekly", "day": "Daily"}.get(
        interval or "", "One-off"
    )


def receipts_wanted(c: Contribution) -> bool:
    """False when the gift came through a form whose receipts are switched off, or whose receipts Stripe
    sends ("Stripe sends the receipt": the payment carries receipt_email)."""
    form_id = c.donation_form_id or (c.recur.donation_form_id if c.recur is not None else None)
    form = db.session.get(DonationForm, form_id) if form_id else None
    return form is None or (form.receipts and not form.stripe_receipt)


def state_dict(c: Contribution) -> dict[str, Any]:
    return {"state": thanks_state(c), "status": c.status}
