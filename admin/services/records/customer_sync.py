"""What paydesk keeps on a contact's Stripe customers (CiviCRM's rules), and asking for it to be pushed.

``customer_fields`` is exactly the seeds' FAQ list: the contact's name and email, the description
"paydesk: <site name>", and in its metadata the contact id, a link to the contact's page and the paydesk version. A
push is asked for through the outbox after each completed payment and when a contact's name or email
changes (``request_metadata_sync`` / ``request_contact_sync``); ``customers.push_metadata`` runs it.
Apart from ``customers`` so that contacts and contributions can ask for a push without importing the
customer operations (which import them: no circle).
"""

from __future__ import annotations

import hashlib
import json
from types import SimpleNamespace

from flask import current_app

from admin.config import VERSION
from admin.models import Contact
from admin.services.core.outbox import enqueue


def contact_url(contact_id: int) -> str:
    """The contact's page, absolute (``BASE_URL``), built from the URL map (no request needed)."""
    path = current_app.url_map.bind("paydesk").build("contacts.show", {"contact_id": contact_id})
    return current_app.config["BASE_URL"].rstrip("/") + path


def customer_fields(contact: Contact | SimpleNamespace) -> dict:
    """What paydesk writes on a contact's Stripe customer: the FAQ's list, nothing more. ``contact`` may be a
    SimpleNamespace of the values a contact is about to take (written to Stripe before they are stored)."""
    cfg = current_app.config
    site = cfg["SITE_NAME"]
    name = contact.display_name or contact.email or f"Contact {contact.id}"
    return {
        "name": name,
        "email": contact.email or None,
        "description": f"paydesk: {site}",  # the FAQ: the customer says which site it belongs to
        "metadata": {
            "contact_id": str(contact.id),
            "contact_url": contact_url(contact.id),
            "site_name": site,
            "paydesk_version": VERSION,
        },
    }


def request_metadata_sync(processor_id: int, customer_id: str | None, contact: Contact | None) -> None:
    """Ask for the customer's metadata to be brought in line with the contact (after each completed
    payment, and when the contact's name or email changes).

    The task is keyed by a digest of what would be sent, so a payment that
    changes nothing (same name, email, contact, site, version) adds no second
    push, while any change does.
    """
    if not customer_id or contact is None or not current_app.config.get("SYNC_CUSTOMER_METADATA", True):
        return
    digest = hashlib.sha256(json.dumps(customer_fields(contact), sort_keys=True).encode()).hexdigest()[:16]
    enqueue(
        "customer_metadata",
        f"{processor_id}:{customer_id}:{digest}",
        {"customer_id": customer_id, "contact_id": contact.id},
        processor_id,
    )


def request_contact_sync(contact: Contact) -> None:
    """The contact's name or email changed in paydesk: push it to each of its live Stripe customers."""
    for link in contact.stripe_customers:
        if not link.deleted:
            request_metadata_sync(link.processor_id, link.customer_id, contact)
