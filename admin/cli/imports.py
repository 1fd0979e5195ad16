"""``import subscriptions|customers|charge`` (CiviCRM's import API) and ``customers
get|create|delete|update-contact-ids|update-metadata`` (CiviCRM's StripeCustomer API).

Many objects are imported by a job run here in the foreground (progress bar on stderr,
Ctrl-C pauses, ``jobs resume ID`` continues); one object by id is imported at once, and when
Stripe does not have it the command says what Stripe said and exits 1.
"""

from __future__ import annotations

import json

import click
from flask import Flask

from admin.cli.jobs import run_job
from admin.cli.support import (
    ID,
    PaydeskGroup,
    emit,
    fail,
    format_option,
    param_options,
    ppid_option,
    processor_or_fail,
    with_options,
)
from admin.errors import ServiceError
from admin.services.records.jobs import ImportSome
from admin.stripe_gateway import GatewayError

import_cli = PaydeskGroup(
    "import", help="Bring into paydesk what Stripe has: subscriptions, customers, charges."
)
customers_cli = PaydeskGroup(
    "customers", help="Stripe customers linked to contacts (CiviCRM's StripeCustomer)."
)


def _print(out: dict, fmt: str, line: str) -> None:
    click.echo(json.dumps(out, indent=2, default=str) if fmt == "json" else line)


def _paging(one, limit, starting_after, noun: str) -> dict:
    if one and (limit or starting_after):
        fail(ServiceError(f"give either --{noun} or --limit/--starting-after, not both"))
    return {"limit": limit, "starting_after": starting_after}


@import_cli.command("subscriptions")
@ppid_option
@click.option("--subscription", help="Import this one subscription (sub_...), now.")
@with_options(param_options(ImportSome, "limit"))
@click.option("--starting-after", help="Begin after this subscription id (Stripe's order).")
@format_option
def import_subscriptions(ppid, subscription, limit, starting_after, fmt):
    """Subscriptions, each with all its invoices and charges (CiviCRM's importallsubscriptions,
    importsubscriptions, importsubscription). Nothing already imported is imported twice."""
    from admin.services.records.imports import import_subscription_by_id

    params = _paging(subscription, limit, starting_after, "subscription")
    proc = processor_or_fail(ppid)
    if not subscription:
        run_job("imports.subscriptions", params, processor_id=proc.id, fmt=fmt)
        return
    try:
        done = import_subscription_by_id(proc, subscription)
    except ServiceError as err:
        fail(err)
    r = done.recur
    _print(
        {
            "subscription_id": done.subscription_id,
            "outcome": done.outcome,
            "recur_id": r.id,
            "contact_id": r.contact_id,
            "status": r.status,
            "differences": done.differences,
        },
        fmt,
        f"{done.subscription_id}: {done.outcome} (recurring contribution {r.id}, {r.status})"
        + "".join(
            f"\n  still differs: {d['what']} {d['object']}: Stripe {d['stripe']}, paydesk {d['paydesk']}"
            for d in done.differences
        ),
    )


@import_cli.command("customers")
@ppid_option
@click.option("--customer", help="Import this one customer (cus_...), now.")
@with_options(param_options(ImportSome, "limit"))
@click.option("--starting-after", help="Begin after this customer id (Stripe's order).")
@format_option
def import_customers(ppid, customer, limit, starting_after, fmt):
    """Customers, each linked to a contact: the one its metadata names, else the one with its email,
    else a new one (CiviCRM's importallcustomers, importcustomers, importcustomer)."""
    from admin.services.records.imports import import_customer

    params = _paging(customer, limit, starting_after, "customer")
    proc = processor_or_fail(ppid)
    if not customer:
        run_job("imports.customers", params, processor_id=proc.id, fmt=fmt)
        return
    try:
        contact, how = import_customer(proc, customer)
    except ServiceError as err:
        fail(err)
    _print(
        {"customer_id": customer, "outcome": how, "contact_id": contact.id, "email": contact.email},
        fmt,
        f"{customer}: {how} (contact {contact.id}, {contact.display_name})",
    )


@import_cli.command("charge")
@ppid_option
@click.option("--charge", required=True, help="The charge (ch_...).")
@click.option(
    "--contact-id", type=ID, help="Whose it is (default: the charge's customer, else its billing email)."
)
@format_option
def import_charge_cmd(ppid, charge, contact_id, fmt):
    """One charge as a contribution and payment (CiviCRM's importcharge)."""
    from admin.services.records.imports import import_charge

    try:
        c = import_charge(processor_or_fail(ppid), charge, contact_id=contact_id)
    except ServiceError as err:
        fail(err)
    _print(
        {
            "contribution_id": c.id,
            "status": c.status,
            "amount": c.amount,
            "currency": c.currency,
            "trxn_id": c.trxn_id,
            "contact_id": c.contact_id,
        },
        fmt,
        f"{charge}: contribution {c.id}, {c.status}, contact {c.contact_id}",
    )


# -- customers -----------------------------------------------------------------------------------


def _one_of(contact_id, customer):
    if (contact_id is None) == (customer is None):
        fail(ServiceError("give either --contact-id or --customer"))


contact_option = click.option("--contact-id", type=ID, help="The contact's id in paydesk.")
customer_option = click.option("--customer", help="The Stripe customer id (cus_...).")


@customers_cli.command("get")
@ppid_option
@contact_option
@customer_option
@format_option
def customers_get(ppid, contact_id, customer, fmt):
    """A contact's Stripe customers, or one customer: paydesk's link and the customer as Stripe has it."""
    from admin.services.records.customers import stripe_customers

    _one_of(contact_id, customer)
    try:
        rows = stripe_customers(processor_or_fail(ppid), contact_id=contact_id, customer_id=customer)
    except ServiceError as err:
        fail(err)
    if fmt == "json":
        emit(rows, fmt)
        return
    emit(
        [
            {
                "customer_id": r["customer_id"],
                "contact_id": r["contact_id"],
                "linked": r["linked"],
                "in_stripe": "yes" if r["stripe"] else r["stripe_error"],
                "email": (r["stripe"] or {}).get("email"),
                "name": (r["stripe"] or {}).get("name"),
                "metadata_contact_id": ((r["stripe"] or {}).get("metadata") or {}).get("contact_id"),
            }
            for r in rows
        ],
        fmt,
    )


@customers_cli.command("create")
@ppid_option
@click.option("--contact-id", type=ID, required=True, help="The contact's id in paydesk.")
@format_option
def customers_create(ppid, contact_id, fmt):
    """Create the Stripe customer for a contact (with paydesk's metadata) and link it."""
    from admin.services.records.contacts import find_contact
    from admin.services.records.customers import create_customer

    contact = find_contact(contact_id)
    if contact is None:
        fail(ServiceError(f"no contact {contact_id}"))
    try:
        link = create_customer(processor_or_fail(ppid), contact)
    except ServiceError as err:
        fail(err)
    _print({"customer_id": link.customer_id, "contact_id": contact_id}, fmt, link.customer_id)


@customers_cli.command("delete")
@ppid_option
@contact_option
@customer_option
@format_option
def customers_delete(ppid, contact_id, customer, fmt):
    """Remove the link between a contact and its Stripe customer(s); nothing is changed in Stripe
    (CiviCRM's StripeCustomer.delete)."""
    from admin.services.records.customers import links_of, remove_link

    _one_of(contact_id, customer)
    proc = processor_or_fail(ppid)
    try:
        links = links_of(proc.id, contact_id=contact_id, customer_id=customer)
        if not links:
            raise ServiceError(f"no link to remove for {customer or f'contact {contact_id}'}")
        removed = []
        for link in links:
            removed.append({"customer_id": link.customer_id, "contact_id": link.contact_id})
            remove_link(link)
    except ServiceError as err:
        fail(err)
    if fmt == "json":
        emit(removed, fmt)
    else:
        for r in removed:
            click.echo(f"unlinked {r['customer_id']} from contact {r['contact_id']}")


@customers_cli.command("update-contact-ids")
@ppid_option
@customer_option
@format_option
def customers_update_contact_ids(ppid, customer, fmt):
    """Link customers to the contact their metadata names (``contact_id`` or ``civicrm_contact_id``):
    one customer, or every linked one (a job)."""
    from admin.services.records.customers import update_contact_id_by_id

    proc = processor_or_fail(ppid)
    if not customer:
        run_job("customers.update_contact_ids", {}, processor_id=proc.id, fmt=fmt)
        return
    try:
        outcome = update_contact_id_by_id(proc, customer)
    except ServiceError as err:
        fail(err)
    _print({"customer_id": customer, "outcome": outcome}, fmt, f"{customer}: {outcome}")


@customers_cli.command("update-metadata")
@ppid_option
@contact_option
@customer_option
@format_option
def customers_update_metadata(ppid, contact_id, customer, fmt):
    """Write paydesk's metadata (name, email, description, contact id, link, version) on a contact's
    customers, one customer, or every linked customer (a job, when neither is given)."""
    from admin.services.records.customers import links_of, push_customer_metadata

    proc = processor_or_fail(ppid)
    if contact_id is None and customer is None:
        run_job("customers.update_metadata", {}, processor_id=proc.id, fmt=fmt)
        return
    try:
        links = [
            link
            for link in links_of(proc.id, contact_id=contact_id, customer_id=customer)
            if not link.deleted
        ]
        if not links:
            raise ServiceError(f"no linked Stripe customer for {customer or f'contact {contact_id}'}")
        for link in links:
            push_customer_metadata(proc, link)
    except (ServiceError, GatewayError) as err:
        fail(err)
    rows = [
        {"customer_id": link.customer_id, "contact_id": link.contact_id, "updated": True} for link in links
    ]
    if fmt == "json":
        emit(rows, fmt)
    else:
        for r in rows:
            click.echo(f"{r['customer_id']}: updated from contact {r['contact_id']}")


def register(app: Flask) -> None:
    app.cli.add_command(import_cli)
    app.cli.add_command(customers_cli)
