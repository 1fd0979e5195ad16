"""Money on the contact's page: charge a saved card (confirm, then charge exactly what was confirmed), the contact's saved cards (list,
add with Stripe Elements, make default, remove), and a gift link for a known donor (the signed link
``forms link`` makes, to copy or email)."""

from __future__ import annotations

from flask import Blueprint, abort, render_template, request, url_for

from admin.errors import ServiceError
from admin.htmx import is_htmx
from admin.security import role_required, uses_stripe_js
from admin.services.core.confirmations import ConfirmationRefused
from admin.services.core.idempotency import new_action_key
from admin.services.donations import forms as donation_forms
from admin.services.payments import cards, charges, common
from admin.services.records import contacts as people
from admin.services.settings.processors import get_processor
from admin.views.actions import action_response, labelled
from admin.views.confirm import is_run, money_confirmation, refused, take_action
from admin.views.contacts import money_links, page_data

bp = Blueprint("contact_money", __name__)


def _contact_or_404(contact_id: int):
    contact = people.find_contact(contact_id)
    if contact is None:
        abort(404)
    return contact


def _link(contact, customer_id: str | None):
    links = money_links(contact)
    found = [(s, p) for s, p in links if not customer_id or s.customer_id == customer_id]
    if len(found) != 1:
        abort(404)
    return found[0]


CHARGE = "payment.charge"  # a single action confirmed through views/confirm.py


@bp.post("/contacts/<id:contact_id>/charge")
@role_required("operator")
def charge(contact_id: int):
    """Without ``step=run``: check the charge and ask to confirm it, keeping exactly what was shown on the
    server; with it and that confirmation's token: charge what was stored (never values posted again)."""
    contact = _contact_or_404(contact_id)
    back = url_for("contacts.show", contact_id=contact.id)
    try:
        if not is_run():
            _, proc = _link(contact, request.form.get("customer_id") or None)
            plan = charges.plan_charge(
                proc, charges.ChargeRequest.from_form(request.form, contact_id=contact.id)
            )
            return money_confirmation(
                "Charge",
                plan,
                kind=CHARGE,
                processor_id=proc.id,
                action=url_for("contact_money.charge", contact_id=contact.id),
                back=back,
                back_label=contact.display_name or contact.email or f"Contact #{contact.id}",
                target="#charge-result",
            )
        try:
            row = take_action(CHARGE)
        except ConfirmationRefused as err:
            return refused(err, back)
        out = charges.charge(get_processor(row.processor_id), charges.ChargeRequest(**row.params))
    except ServiceError as err:
        return action_response("_message.html", back, labelled(err, charges.LABELS), "error")
    return action_response(
        "contacts/_charged.html", back, out.message, "success" if out.ok else "error", out=out
    )


@bp.get("/contacts/<id:contact_id>/cards")
@role_required("viewer")
@uses_stripe_js
def card_list(contact_id: int):
    contact = _contact_or_404(contact_id)
    return _cards_answer(contact, None, "success", status=200)


def _cards_answer(contact, message: str | None, tone: str, status: int | None = None):
    rows = []
    for link, proc in money_links(contact):
        try:
            found, _ = cards.list_cards(proc, link.customer_id)
            rows.append({"link": link, "processor": proc, "cards": found, "error": None})
        except ServiceError as err:
            rows.append({"link": link, "processor": proc, "cards": [], "error": err.message})
    ctx = {"contact": contact, "rows": rows, "action_key": new_action_key()}
    if message is None:
        if is_htmx():
            return render_template("contacts/_cards.html", **ctx)
        return render_template("contacts/cards.html", **ctx)
    return action_response(
        "contacts/_cards.html",
        url_for("contacts.show", contact_id=contact.id),
        message,
        tone,
        status=status,
        **ctx,
    )


@bp.post("/contacts/<id:contact_id>/cards/add")  # not the GET path: werkzeug would answer a bad id 405
@role_required("operator")
def add_card(contact_id: int):
    contact = _contact_or_404(contact_id)
    form = request.form
    try:
        link, proc = _link(contact, form.get("customer_id") or None)
        message = cards.add_card(
            proc,
            contact,
            form.get("payment_method", ""),
            make_default=common.flag(form.get("make_default")),
            customer_id=link.customer_id,
            action_key=form.get("action_key"),
        )
        tone = "success"
    except ServiceError as err:
        message, tone = labelled(err, {"payment_method": "Card"}), "error"
    return _cards_answer(contact, message, tone)


@bp.post("/contacts/<id:contact_id>/cards/<card_id>/<what>")
@role_required("operator")
def card_action(contact_id: int, card_id: str, what: str):
    if what not in ("remove", "default"):
        abort(404)
    contact = _contact_or_404(contact_id)
    try:
        link, proc = _link(contact, request.form.get("customer_id") or None)
        if what == "remove":
            message = cards.remove_card(
                proc,
                contact,
                card_id,
                customer_id=link.customer_id,
                action_key=request.form.get("action_key"),
            )
        else:
            message = cards.make_default(proc, contact, card_id, customer_id=link.customer_id)
        tone = "success"
    except ServiceError as err:
        message, tone = err.message, "error"
    return _cards_answer(contact, message, tone)


@bp.post("/contacts/<id:contact_id>/donor-links")
@role_required("operator")
def make_donor_link(contact_id: int):
    """A gift for a known donor: the signed link to a donation form (``forms link``), to copy or email."""
    contact = _contact_or_404(contact_id)
    form = donation_forms.get_form(request.form.get("form_id") or "")
    if form is None:
        return action_response(
            "contacts/_donor_links.html",
            url_for("contacts.show", contact_id=contact.id),
            "Donation form: choose one of the forms.",
            "error",
            **page_data(contact),
        )
    url = donation_forms.donor_link(form, contact)
    return action_response(
        "contacts/_donor_links.html",
        url_for("contacts.show", contact_id=contact.id),
        f"Made a donor link to {form.title}: copy it or email it to the donor. It is good for one gift.",
        "success",
        new_link=url,
        new_link_form=form,
        **page_data(contact),
    )
