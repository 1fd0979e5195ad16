"""``/contacts/<id>``: everything about one contact on one page, and what staff do to its Stripe
customers (create one, remove a link, read the contact id back, push metadata) or to its
name and email."""

from __future__ import annotations

from flask import Blueprint, abort, render_template, request, url_for

from admin.errors import ServiceError
from admin.security import role_required, uses_stripe_js
from admin.services.core import audit
from admin.services.donations import forms as donation_forms
from admin.services.payments import charges
from admin.services.records import contacts as people
from admin.services.records import customers as cust
from admin.services.settings.processors import get_processor, list_processors
from admin.views.actions import action_response

bp = Blueprint("contacts", __name__)


def _contact_or_404(contact_id: int):
    contact = people.find_contact(contact_id)
    if contact is None:
        abort(404)
    return contact


def money_links(contact) -> list:
    """The contact's customers staff may charge and whose cards they handle, with their processors."""
    return [(s, get_processor(s.processor_id)) for s in charges.customer_links(contact)]


def page_data(contact) -> dict:
    return {
        "d": people.detail(contact),
        "processors": list_processors(),
        "history": audit.for_object("contact", str(contact.id), limit=20),
        "donor_links": donation_forms.links_of(contact),
        "donation_forms": donation_forms.list_forms(),
        "money_links": money_links(contact),
    }


@bp.get("/contacts/<id:contact_id>")
@role_required("viewer")
@uses_stripe_js  # adding a saved card (operators) mounts Stripe Elements here
def show(contact_id: int):
    return render_template("contacts/show.html", **page_data(_contact_or_404(contact_id)))


def _answer(contact, message: str, tone: str):
    return action_response(
        "contacts/_customers.html",
        url_for("contacts.show", contact_id=contact.id),
        message,
        tone,
        **page_data(contact),
    )


def _link_of(contact, customer_id: str):
    link = next((s for s in contact.stripe_customers if s.customer_id == customer_id), None)
    if link is None:
        abort(404)
    return link


@bp.post("/contacts/<id:contact_id>/customers")
@role_required("operator")
def create_customer(contact_id: int):
    contact = _contact_or_404(contact_id)
    try:
        link = cust.create_customer(get_processor(request.form.get("ppid") or None), contact)
        return _answer(contact, f"Created Stripe customer {link.customer_id} and linked it.", "success")
    except ServiceError as err:
        return _answer(contact, err.message, "error")


@bp.post("/contacts/<id:contact_id>/customers/<customer_id>/<what>")
@role_required("operator")
def customer_action(contact_id: int, customer_id: str, what: str):
    if what not in ("unlink", "update_contact_id", "push"):
        abort(404)
    contact = _contact_or_404(contact_id)
    link = _link_of(contact, customer_id)
    try:
        proc = get_processor(link.processor_id)
        if what == "unlink":
            cust.remove_link(link)
            message = f"{customer_id} is no longer linked to this contact (nothing changed in Stripe)."
        elif what == "push":
            cust.push_customer_metadata(proc, link)
            message = f"{customer_id} now carries this contact's name, email, id and link."
        else:
            outcome = cust.update_contact_id_by_id(proc, customer_id)
            message = {
                "relinked": f"{customer_id} names another contact in its metadata: linked to it now.",
                "unchanged": f"{customer_id}'s metadata names this contact: nothing to change.",
                "no contact id": f"{customer_id}'s metadata names no contact paydesk has.",
            }.get(outcome, outcome)
        tone = "success"
    except ServiceError as err:
        message, tone = err.message, "error"
    db_contact = people.find_contact(contact_id) or contact
    return _answer(db_contact, message, tone)


@bp.post("/contacts/<id:contact_id>/edit")
@role_required("operator")
def edit(contact_id: int):
    contact = _contact_or_404(contact_id)
    try:
        changed = people.update_contact(
            contact, name=request.form.get("name"), email=request.form.get("email")
        )
        message = (
            f"Saved ({' and '.join(changed)} changed); its Stripe customers will be updated."
            if changed
            else "Nothing changed."
        )
        tone = "success"
    except ServiceError as err:
        message, tone = err.message, "error"
    return action_response(
        "contacts/_details.html",
        url_for("contacts.show", contact_id=contact.id),
        message,
        tone,
        **page_data(contact),
    )


@bp.post("/contacts/<id:contact_id>/donor-links/<id:link_id>/revoke")
@role_required("operator")
def revoke_donor_link(contact_id: int, link_id: int):
    """Revoke a signed donor link (``forms link``): it can no longer be used to give."""
    contact = _contact_or_404(contact_id)
    try:
        link = donation_forms.revoke_link(contact, link_id)
        message, tone = f"Donor link #{link.id} is revoked: it can no longer be used to give.", "success"
    except ServiceError as err:
        message, tone = err.message, "error"
    return action_response(
        "contacts/_donor_links.html",
        url_for("contacts.show", contact_id=contact.id),
        message,
        tone,
        **page_data(contact),
    )
