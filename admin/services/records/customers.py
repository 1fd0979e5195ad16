"""Stripe customers: the link to a contact (CiviCRM's StripeCustomer) and the metadata paydesk
keeps on them (CiviCRM's rules).

What a customer carries is exactly the seeds' FAQ list (``customer_fields``): the contact's
name and email, the description "paydesk: <site name>", and in its metadata the contact id, a link
to the contact's page and the paydesk version. It is pushed after each completed payment and
when a contact's name or email changes in paydesk (both through the outbox, keyed by what
would be sent, so nothing unchanged is sent twice), and on demand (one contact, or all as a
job).

Staff operations (CiviCRM's StripeCustomer.get / create / delete / updatecontactids /
updatestripemetadata): ``stripe_customers``, ``create_customer``, ``remove_link``,
``update_contact_id``, ``push_customer_metadata``. Each writes an audit entry in the
transaction of its change.
"""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

from flask import current_app
from sqlalchemy import bindparam, func, select

from admin.config import VERSION
from admin.dbutil import immediate, parse_id
from admin.errors import ServiceError, check_text, stripe_failure
from admin.extensions import db
from admin.models import AuditLog, Contact, OutboxTask, PaymentProcessor, StripeCustomer
from admin.services.core import audit, idempotency
from admin.services.core.outbox import runner
from admin.services.core.stripe_reader import StripeReader, read_then_write
from admin.services.records.contacts import (
    checked_contact_fields,
    contact_named_by,
    new_contact,
    update_contact,
)
from admin.services.records.customer_sync import customer_fields, request_metadata_sync
from admin.services.settings.processors import processor_ref
from admin.stripe_gateway import Gateway, GatewayError

_CONTACTS = Contact.__table__
# What a push writes of a contact (``customer_fields``), read by one statement built once.
_PUSHED = select(_CONTACTS.c.id, _CONTACTS.c.display_name, _CONTACTS.c.email).where(
    _CONTACTS.c.id == bindparam("contact_id")
)


@runner("customer_metadata")
def push_metadata(task: OutboxTask) -> None:
    row = db.session.connection().execute(_PUSHED, {"contact_id": task.payload["contact_id"]}).first()
    contact = SimpleNamespace(id=row.id, display_name=row.display_name, email=row.email) if row else None
    # the worker's cached copy (its key decrypted once), as the events' own Stripe reads use
    processor = processor_ref(task.processor_id) if task.processor_id is not None else None
    if contact is None or processor is None:
        return
    Gateway.for_processor(processor).update(
        "customers", task.payload["customer_id"], customer_fields(contact)
    )


# -- staff operations ------------------------------------------------------------------------


def find_link(processor_id: int, customer_id: str) -> StripeCustomer | None:
    return db.session.scalar(
        select(StripeCustomer).where(
            StripeCustomer.processor_id == processor_id, StripeCustomer.customer_id == customer_id
        )
    )


def links_of(
    processor_id: int, *, contact_id: int | None = None, customer_id: str | None = None
) -> list[StripeCustomer]:
    """The customer links named by a contact id or a customer id (CiviCRM's get/delete take either)."""
    if (contact_id is None) == (customer_id is None):
        raise ServiceError("give either a contact id or a Stripe customer id")
    q = select(StripeCustomer).where(StripeCustomer.processor_id == processor_id)
    if contact_id is not None:
        pk = parse_id(contact_id)
        if pk is None or db.session.get(Contact, pk) is None:
            raise ServiceError(f"no contact {str(contact_id)[:40]}", field="contact_id")
        q = q.where(StripeCustomer.contact_id == pk)
    elif customer_id is not None:  # always, when no contact id
        q = q.where(StripeCustomer.customer_id == customer_id.strip())
    return list(db.session.scalars(q.order_by(StripeCustomer.id)))


def stripe_customers(
    processor: PaymentProcessor, *, contact_id: int | None = None, customer_id: str | None = None
) -> list[dict[str, Any]]:
    """StripeCustomer.get: each customer named (by its id, or all of a contact's) with paydesk's
    link and the customer as Stripe has it now (``stripe`` None, and why, when Stripe has not)."""
    links = links_of(processor.id, contact_id=contact_id, customer_id=customer_id)
    wanted: list[tuple[str, StripeCustomer | None]] = [(link.customer_id, link) for link in links] or (
        [(customer_id.strip(), None)] if customer_id else []
    )
    gw = Gateway.for_processor(processor)
    out = []
    for cid, link in wanted:
        stripe_obj, error = None, None
        try:
            stripe_obj = dict(gw.retrieve("customers", cid))
        except GatewayError as err:
            if not err.not_found:
                raise stripe_failure(err) from err
            error = err.message
        if stripe_obj and stripe_obj.get("deleted"):
            stripe_obj, error = None, "deleted in Stripe"
        out.append(
            {
                "customer_id": cid,
                "processor_id": processor.id,
                "linked": link is not None,
                "contact_id": link.contact_id if link else None,
                "link_deleted": bool(link.deleted) if link else None,
                "stripe": stripe_obj,
                "stripe_error": error,
            }
        )
    return out


def create_customer(
    processor: PaymentProcessor,
    contact: Contact,
    *,
    description: str | None = None,
    idempotency_key: str | None = None,
) -> StripeCustomer:
    """StripeCustomer.create: a Stripe customer for the contact (with the FAQ's metadata), linked.
    Refused when the contact has a live customer on this processor already. ``description``: the
    customer's description instead of paydesk's (the API lets callers write their own);
    ``idempotency_key``: Stripe's key for the create instead of paydesk's own (the API's). Commits."""
    live = [
        link for link in contact.stripe_customers if link.processor_id == processor.id and not link.deleted
    ]
    if live:
        raise ServiceError(
            f"{contact.display_name or 'This contact'} has a Stripe customer already: {live[0].customer_id}"
        )
    # Part of the idempotency key: how many customers paydesk made for this contact here before. The same for a
    # double submit or a retry after Stripe failed; new once a customer was made (Stripe keeps a key's answer
    # for a day: a key used before gives back the customer made then, even after it was unlinked).
    tries = (
        db.session.scalar(
            select(func.count())
            .select_from(AuditLog)
            .where(
                AuditLog.action == "customer.create",
                AuditLog.result == "ok",
                AuditLog.object_type == "contact",
                AuditLog.object_id == str(contact.id),
                AuditLog.processor_id == processor.id,
            )
        )
        or 0
    )
    try:
        fields = customer_fields(contact)
        if description is not None:
            fields["description"] = description
        cus = Gateway.for_processor(processor).create(
            "customers",
            fields,
            # paydesk-customer-<ppid>-<contact>-<tries>
            idempotency_key=idempotency_key
            or idempotency.idempotency_key("customer", str(processor.id), str(contact.id), tries),
        )
    except GatewayError as err:
        raise audit.stripe_failed(
            "customer.create",
            err,
            processor_id=processor.id,
            object_type="contact",
            object_id=str(contact.id),
            doing="did not create the customer",
        ) from err
    immediate()
    link = _add_link(processor, contact, cus)
    db.session.commit()
    return link


def _add_link(processor: PaymentProcessor, contact: Contact, cus: Any) -> StripeCustomer:
    """The link from ``contact`` to the Stripe customer ``cus`` just created (a gateway result), and its audit
    entry (``customer.create`` with Stripe's request id), in the caller's transaction."""
    link = StripeCustomer(customer_id=cus["id"], contact_id=contact.id, processor_id=processor.id)
    db.session.add(link)
    audit.record(
        "customer.create",
        object_type="contact",
        object_id=str(contact.id),
        processor_id=processor.id,
        parameters={"customer": cus["id"]},
        stripe_request_id=cus.request_id,
        commit=False,
    )
    return link


def remove_link(link: StripeCustomer) -> None:
    """StripeCustomer.delete: forget the link between a contact and a Stripe customer (nothing
    changes in Stripe; the contact's contributions keep their customer id). Commits."""
    immediate()
    audit.record(
        "customer.unlink",
        object_type="contact",
        object_id=str(link.contact_id),
        processor_id=link.processor_id,
        parameters={"customer": link.customer_id},
        commit=False,
    )
    db.session.delete(link)
    db.session.commit()


def update_contact_id(processor: PaymentProcessor, customer: dict) -> str:
    """StripeCustomer.updatecontactids for one customer (as Stripe has it): when its metadata
    names an existing contact other than the linked one, link it to that contact. Returns
    "relinked", "unchanged", "not linked" or "no contact id". Does not commit."""
    link = find_link(processor.id, customer["id"])
    if link is None:
        return "not linked"
    named = contact_named_by(customer)
    if named is None:
        return "no contact id"
    if named.id == link.contact_id:
        return "unchanged"
    audit.record(
        "customer.update_contact_id",
        object_type="contact",
        object_id=str(named.id),
        processor_id=processor.id,
        parameters={"customer": customer["id"], "from_contact": link.contact_id, "to_contact": named.id},
        commit=False,
    )
    link.contact_id = named.id
    db.session.flush()
    return "relinked"


def update_contact_id_by_id(processor: PaymentProcessor, customer_id: str) -> str:
    """``update_contact_id`` for one customer fetched by id. Commits."""
    reader = StripeReader(processor)
    return read_then_write(
        reader,
        "customer.update_contact_id",
        ("customer", customer_id),
        lambda: reader.get("customers", customer_id),
        lambda customer: update_contact_id(processor, dict(customer)),
    )  # audits a change


def push_customer_metadata(processor: PaymentProcessor, link: StripeCustomer) -> None:
    """StripeCustomer.updatestripemetadata for one customer: write the contact's details now.
    Audited with Stripe's request id. Commits."""
    contact = link.contact
    try:
        res = Gateway.for_processor(processor).update("customers", link.customer_id, customer_fields(contact))
    except GatewayError as err:
        raise audit.stripe_failed(
            "customer.update_metadata",
            err,
            processor_id=processor.id,
            object_type="contact",
            object_id=str(contact.id),
            parameters={"customer": link.customer_id},
        ) from err
    audit.record(
        "customer.update_metadata",
        object_type="contact",
        object_id=str(contact.id),
        processor_id=processor.id,
        parameters={"customer": link.customer_id},
        stripe_request_id=res.request_id,
    )


# -- the integration API (GetCustomer, CreateCustomer, UpdateCustomer) ------------------------


def get_customer(
    processor: PaymentProcessor, customer_id: str
) -> tuple[dict[str, Any], StripeCustomer | None]:
    """The customer as Stripe has it now, and paydesk's link to a contact (None when there is none)."""
    try:
        cus = dict(Gateway.for_processor(processor).retrieve("customers", customer_id))
    except GatewayError as err:
        raise stripe_failure(err, "customer", customer_id) from err
    if cus.get("deleted"):
        gone = ServiceError(f"Stripe: the customer {customer_id} was deleted")
        gone.not_found = True
        raise gone
    return cus, find_link(processor.id, customer_id)


def _api_text(value: str | None, label: str, name: str, limit: int = 255) -> str | None:
    if value is None:
        return None
    value = check_text(value, label, name)
    if len(value) > limit:
        raise ServiceError(f"{label}: at most {limit} characters, please", field=name)
    return value


def create_for_api(
    processor: PaymentProcessor,
    *,
    name: str | None = None,
    email: str | None = None,
    description: str | None = None,
    contact_id: int | None = None,
    idempotency_key: str | None = None,
) -> tuple[dict[str, Any], StripeCustomer]:
    """A Stripe customer and its contact: the contact ``contact_id``, else a new one (source "api") with
    ``name`` and ``email``. The customer carries paydesk's metadata, as every customer does.
    ``idempotency_key``: Stripe's key for the create (the API derives it from the token and the client's
    Idempotency-Key, so a client retrying after a failure never makes a second customer). A new contact is
    written only once Stripe has made the customer: a failed request leaves no contact behind. Commits."""
    from admin.services.records.contacts import find_contact

    name = _api_text(name, "Name", "name")
    email = _api_text(email, "Email", "email")
    description = _api_text(description, "Description", "description", 350)
    if contact_id is not None:
        contact = find_contact(contact_id)
        if contact is None:
            raise ServiceError(f"there is no contact {contact_id}", field="contact_id")
        link = create_customer(
            processor, contact, description=description or None, idempotency_key=idempotency_key
        )
    else:
        link = _create_with_new_contact(processor, name, email, description, idempotency_key)
    cus, _ = get_customer(processor, link.customer_id)
    return cus, link


def _create_with_new_contact(
    processor: PaymentProcessor,
    name: str | None,
    email: str | None,
    description: str | None,
    idempotency_key: str | None,
) -> StripeCustomer:
    """The customer first, with what the request says (the same for a retry, so Stripe's idempotency key holds:
    no contact id yet); then, in one transaction, the contact, the link and their audit entries; then the
    contact's id and link on the customer (by the outbox when Stripe fails now)."""
    site = current_app.config["SITE_NAME"]
    shown = name or email or "Anonymous donor"  # the new contact's display name (contacts.new_contact)
    fields = {
        "name": shown,
        "email": email or None,
        "description": description or f"{shown} ({site})",
        "metadata": {"site_name": site, "paydesk_version": VERSION},
    }
    key = idempotency_key or idempotency.idempotency_key("api-customer", str(processor.id), None)
    try:
        cus = Gateway.for_processor(processor).create("customers", fields, idempotency_key=key)
    except GatewayError as err:
        raise audit.stripe_failed(
            "customer.create",
            err,
            processor_id=processor.id,
            object_type="customer",
            parameters={"name": shown, "email": email or None},
            doing="did not create the customer",
        ) from err
    immediate()
    contact = new_contact(name or None, email or None, source="api")
    db.session.flush()
    audit.record(
        "contact.create",
        object_type="contact",
        object_id=str(contact.id),
        parameters={"name": contact.display_name, "email": contact.email},
        commit=False,
    )
    link = _add_link(processor, contact, cus)
    db.session.commit()
    try:
        res = Gateway.for_processor(processor).update(
            "customers", link.customer_id, {"metadata": customer_fields(contact)["metadata"]}
        )
    except GatewayError as err:
        audit.record(
            "customer.update_metadata",
            object_type="contact",
            object_id=str(contact.id),
            processor_id=processor.id,
            parameters={"customer": link.customer_id},
            ok=False,
            message=str(err),
            stripe_request_id=err.request_id,
            commit=False,
        )
        request_metadata_sync(processor.id, link.customer_id, contact)  # the outbox tries again
    else:
        audit.record(
            "customer.update_metadata",
            object_type="contact",
            object_id=str(contact.id),
            processor_id=processor.id,
            parameters={"customer": link.customer_id},
            stripe_request_id=res.request_id,
            commit=False,
        )
    db.session.commit()
    return link


def update_for_api(
    processor: PaymentProcessor,
    customer_id: str,
    *,
    name: str | None = None,
    email: str | None = None,
    description: str | None = None,
) -> tuple[dict[str, Any], StripeCustomer | None]:
    """UpdateCustomer: an empty ``email`` or ``description`` unsets it (as the connector says); a linked
    contact's name and email change with it (``contacts.update_contact``, which brings every one of its
    customers in line). Everything is checked first, then the customer is written, audited with Stripe's
    request id, and only then is the contact changed: one commit, nothing changed when Stripe fails."""
    name = _api_text(name, "Name", "name")
    email = _api_text(email, "Email", "email")
    description = _api_text(description, "Description", "description", 350)
    cus, link = get_customer(processor, customer_id)  # 404 before any change
    params: dict[str, Any] = {}
    contact_change = None
    if link is not None and (name or email is not None):
        contact = link.contact
        contact_change = checked_contact_fields(
            name or contact.display_name or contact.email or f"Contact {contact.id}",
            contact.email if email is None else email,
        )
        params = customer_fields(
            SimpleNamespace(id=contact.id, display_name=contact_change[0], email=contact_change[1] or None)
        )
    if name:
        params["name"] = name
    if email is not None:
        params["email"] = email
    if description is not None:
        params["description"] = description
    if not params:
        return cus, link
    try:
        res = Gateway.for_processor(processor).update("customers", customer_id, params)
    except GatewayError as err:
        raise audit.stripe_failed(
            "customer.update", err, processor_id=processor.id, object_type="customer", object_id=customer_id
        ) from err
    immediate()
    if contact_change is not None:
        assert link is not None  # a contact change is only worked out for a linked customer
        update_contact(link.contact, name=contact_change[0], email=contact_change[1], commit=False)
    audit.record(
        "customer.update",
        object_type="customer",
        object_id=customer_id,
        processor_id=processor.id,
        parameters={k: params[k] for k in ("name", "email", "description") if k in params},
        stripe_request_id=res.request_id,
        commit=False,
    )
    db.session.commit()
    return dict(res), link
