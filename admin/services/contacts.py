"""Contacts and their Stripe customers (the CiviCRM StripeCustomer link)."""

from __future__ import annotations

from sqlalchemy import func, select

from ..extensions import db
from ..models import Contact, PaymentProcessor, StripeCustomer
from ..stripe_gateway import GatewayError
from .stripe_reader import StripeReader


def linked_contact(processor_id: int, customer_id: str | None) -> Contact | None:
    if not customer_id:
        return None
    link = db.session.scalar(select(StripeCustomer).where(StripeCustomer.processor_id == processor_id,
                                                          StripeCustomer.customer_id == customer_id))
    return link.contact if link else None


def find_by_email(email: str | None) -> Contact | None:
    if not email:
        return None
    return db.session.scalar(select(Contact).where(func.lower(Contact.email) == email.strip().lower(),
                                                   Contact.is_deleted.is_(False)).order_by(Contact.id).limit(1))


def contact_for_details(name: str | None, email: str | None, postal_code: str | None = None,
                        source: str = "stripe") -> Contact:
    """The contact with this email (CiviCRM's default dedupe rule), or a new one."""
    contact = find_by_email(email)
    if contact is None:
        contact = Contact(display_name=name or email or "Anonymous donor", email=email, postal_code=postal_code,
                          source=source)
        db.session.add(contact)
        db.session.flush()
    elif name and not contact.display_name:
        contact.display_name = name
    return contact


def contact_for_customer(reader: StripeReader, processor: PaymentProcessor, customer_id: str | None) -> Contact | None:
    """The contact linked to a Stripe customer; links (or creates) one on first sight.

    A customer paydesk created carries ``metadata.contact_id``; otherwise the
    contact is matched by email, else created from the customer's details.
    """
    if not customer_id:
        return None
    contact = linked_contact(processor.id, customer_id)
    if contact is not None:
        return contact
    try:
        cust = reader.get("customers", customer_id)
    except GatewayError as err:
        if err.not_found:
            return None
        raise
    meta = cust.get("metadata") or {}
    if str(meta.get("contact_id") or "").isdigit():
        contact = db.session.get(Contact, int(meta["contact_id"]))
    if contact is None:
        postal = (cust.get("address") or {}).get("postal_code")
        contact = contact_for_details(cust.get("name"), cust.get("email"), postal)
        if cust.get("phone") and not contact.phone:
            contact.phone = cust["phone"]
    db.session.add(StripeCustomer(customer_id=customer_id, contact=contact, processor_id=processor.id,
                                  deleted=bool(cust.get("deleted"))))
    db.session.flush()
    return contact


def contact_for_charge(reader: StripeReader, processor: PaymentProcessor, charge: dict) -> Contact:
    """A one-off charge's contact: its customer's, else from its billing details."""
    from ..stripe_shapes import sid

    contact = contact_for_customer(reader, processor, sid(charge.get("customer")))
    if contact is not None:
        return contact
    billing = charge.get("billing_details") or {}
    email = billing.get("email") or charge.get("receipt_email")
    return contact_for_details(billing.get("name"), email, (billing.get("address") or {}).get("postal_code"))
