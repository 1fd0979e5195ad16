"""Contacts with a saved card on localstripe, and one-off payments recorded as the webhook records them:
what the payment operations' tests (services, views, CLI, browser) start from."""

from __future__ import annotations

import uuid

from admin.extensions import db
from admin.models import Contact, StripeCustomer
from admin.services.core.stripe_reader import StripeReader, write_after_reading
from admin.services.records.charges import record_charge
from admin.services.settings.processors import gateway

CARD_OK = "4242424242424242"
CARD_DECLINED = "4000000000000341"  # attaches, then every charge is declined
CARD_3DS = "4000002500003155"


def card(processor, number: str = CARD_OK, exp_year: int = 2030) -> str:
    return gateway(processor).create(
        "payment_methods",
        {"type": "card", "card": {"number": number, "exp_month": 12, "exp_year": exp_year, "cvc": "123"}},
    )["id"]


def saved_customer(
    processor, number: str = CARD_OK, *, name: str = "Ada Donor", default: bool = True
) -> Contact:
    """A contact linked to a Stripe customer whose default card is ``number``."""
    gw = gateway(processor)
    email = f"ada.{uuid.uuid4().hex[:8]}@example.org"
    cus = gw.create("customers", {"email": email, "name": name})
    pm = card(processor, number)
    gw.call("payment_methods", "attach", pm, params={"customer": cus["id"]})
    if default:
        gw.update("customers", cus["id"], {"invoice_settings": {"default_payment_method": pm}})
    contact = Contact(display_name=name, email=email)
    db.session.add(contact)
    db.session.flush()
    db.session.add(StripeCustomer(customer_id=cus["id"], contact_id=contact.id, processor_id=processor.id))
    db.session.commit()
    return contact


def customer_of(contact: Contact) -> str:
    return contact.stripe_customers[0].customer_id


def paid_one_off(processor, amount: int = 5000, contact: Contact | None = None):
    """A one-off gift paid in Stripe and recorded as ``charge.succeeded`` records it: (contribution, charge)."""
    gw = gateway(processor)
    params = {
        "amount": amount,
        "currency": "usd",
        "payment_method": card(processor),
        "payment_method_types": ["card"],
        "confirm": True,
    }
    if contact is not None:
        params["customer"] = customer_of(contact)
    pi = gw.create("payment_intents", params)
    reader = StripeReader(processor)
    charge = reader.expanded(
        "charges", pi["latest_charge"], required=("balance_transaction", "amount_refunded")
    )
    c, _ = write_after_reading(
        reader, lambda: record_charge(reader, processor, charge, no_receipt=True, contact=contact)
    )
    db.session.commit()
    return c, charge
