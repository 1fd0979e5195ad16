"""``/customers``: contacts linked to Stripe customers; import customers (all, some, one) and,
for every linked customer, push paydesk's metadata or read contact ids back (jobs)."""

from __future__ import annotations

from flask import Blueprint, abort, render_template, request, url_for

from admin.errors import ServiceError
from admin.htmx import is_partial
from admin.listing import page_or_first
from admin.models import StripeCustomer
from admin.security import role_required
from admin.services.core.bulk import count
from admin.services.records import contacts as people
from admin.services.records.imports import import_customer
from admin.services.records.jobs import linked_customers
from admin.services.settings.processors import get_processor, list_processors
from admin.views.actions import action_response, labelled
from admin.views.confirm import JobConfirmation, confirm_import, confirmation, is_run, run_step
from admin.views.export import filter_csv

bp = Blueprint("customers", __name__)


@bp.get("/customers")
@role_required("viewer")
def index():
    flt, errors = people.ContactFilter.from_args(request.args)
    page = page_or_first(people.contact_page, flt, errors)
    data = {"flt": flt, "errors": errors, "page": page, "giving": people.giving_of([c.id for c in page.rows])}
    if is_partial():
        return render_template("customers/_results.html", **data)
    return render_template("customers/index.html", processors=list_processors(), **data)


CUSTOMER_CSV = (
    "id",
    "display_name",
    "email",
    "phone",
    "postal_code",
    "source",
    "stripe_customer_ids",
    "created_at",
)


@bp.get("/customers/export.csv")
@role_required("viewer")
def export():
    flt, _ = people.ContactFilter.from_args(request.args)
    return filter_csv("customers", CUSTOMER_CSV, people.contact_rows(flt))


@bp.post("/customers/import")
@role_required("operator")
def import_many():
    form = request.form
    back = url_for("customers.index")
    if is_run():
        return run_step(("imports.customers",), back)
    try:
        proc = get_processor(form.get("ppid") or None)
        one = (form.get("customer") or "").strip()
        if one:
            contact, how = import_customer(proc, one)
            return action_response(
                "_message.html",
                url_for("contacts.show", contact_id=contact.id),
                f"{one}: {how} (contact #{contact.id}, {contact.display_name}).",
                "success",
            )
        return confirm_import(
            "imports.customers", proc, "customers", url_for("customers.import_many"), back, "Customers"
        )
    except ServiceError as err:
        return action_response(
            "_message.html", back, labelled(err, {"customer": "One customer (id)"}), "error"
        )


@bp.post("/customers/<what>")
@role_required("operator")
def for_all(what: str):
    """Push metadata to, or read contact ids from, every linked Stripe customer: first a confirmation
    that says how many, then (``step=run``) the job."""
    if what not in ("update_metadata", "update_contact_ids"):
        abort(404)
    if is_run():
        return run_step((f"customers.{what}",), url_for("customers.index"))
    try:
        proc = get_processor(request.form.get("ppid") or None)
    except ServiceError as err:
        return action_response("_message.html", url_for("customers.index"), err.message, "error")
    n = count(linked_customers(proc.id), StripeCustomer)
    many = f"{n:,} linked Stripe customer{'' if n == 1 else 's'}"
    if what == "update_metadata":
        title, verb = f"Push contact details to {many}?", "push to"
        detail = (
            f"Each customer on {proc.name} gets its contact's name, email, a description with the site name, "
            f"the contact id, a link to the contact and the paydesk version. This changes the customers in "
            f"Stripe, one by one, as a background job."
        )
    else:
        title, verb = f"Read contact ids from {many}?", "update"
        detail = (
            f"The job reads {proc.name}'s customer list in Stripe; where a linked customer's metadata names "
            f"another contact paydesk has, the customer is linked to that contact. Nothing changes in Stripe."
        )
    return confirmation(
        JobConfirmation(
            title,
            detail,
            f"Yes, {verb} {n:,}",
            url_for("customers.for_all", what=what),
            url_for("customers.index"),
            "Customers",
            kind=f"customers.{what}",
            params={},
            processor_id=proc.id,
            count=n,
            nothing=None
            if n
            else f"No customer on {proc.name} is linked to a contact yet: import customers first.",
        )
    )
