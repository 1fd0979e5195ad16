"""Stripe customers: the metadata paydesk keeps on them (CiviCRM's rules).

After each completed payment (and when a contact's email changes) the Stripe
customer gets the contact's name and email, a description with the site
name, the contact id, a link to the contact page and the paydesk version.
"""

from __future__ import annotations

import hashlib
import json

from flask import current_app

from ..config import VERSION
from ..extensions import db
from ..models import Contact, OutboxTask, PaymentProcessor
from ..stripe_gateway import Gateway
from .outbox import enqueue, runner


def customer_fields(contact: Contact) -> dict:
    cfg = current_app.config
    site = cfg["SITE_NAME"]
    name = contact.display_name or contact.email or f"Contact {contact.id}"
    return {
        "name": name,
        "email": contact.email or None,
        "description": f"{name} ({site})",
        "metadata": {
            "contact_id": str(contact.id),
            "contact_url": f"{cfg['BASE_URL'].rstrip('/')}/contacts/{contact.id}",
            "site_name": site,
            "paydesk_version": VERSION,
        },
    }


def request_metadata_sync(processor_id: int, customer_id: str | None, contact: Contact | None) -> None:
    """Ask for the customer's metadata to be brought in line with the contact (after each completed payment).

    The task is keyed by a digest of what would be sent, so a payment that
    changes nothing (same name, email, contact, site, version) adds no second
    push, while any change does.
    """
    if not customer_id or contact is None or not current_app.config.get("SYNC_CUSTOMER_METADATA", True):
        return
    digest = hashlib.sha256(json.dumps(customer_fields(contact), sort_keys=True).encode()).hexdigest()[:16]
    enqueue("customer_metadata", f"{processor_id}:{customer_id}:{digest}",
            {"customer_id": customer_id, "contact_id": contact.id}, processor_id)


@runner("customer_metadata")
def push_metadata(task: OutboxTask) -> None:
    contact = db.session.get(Contact, task.payload["contact_id"])
    processor = db.session.get(PaymentProcessor, task.processor_id)
    if contact is None or processor is None:
        return
    Gateway.for_processor(processor).update("customers", task.payload["customer_id"], customer_fields(contact))
