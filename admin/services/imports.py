"""Bringing into paydesk what exists in Stripe but not here (CiviCRM's import API).

``import_charge``: one charge by id, as a contribution and payment (on its invoice's
contribution when it pays an invoice). Staff actions write an audit entry in the same
transaction as the records.
"""

from __future__ import annotations

from ..dbutil import immediate, parse_id
from ..extensions import db
from ..models import Contact, Contribution, PaymentProcessor
from ..stripe_gateway import GatewayError
from . import ServiceError, audit
from .charges import record_charge
from .stripe_reader import StripeReader


def import_charge(processor: PaymentProcessor, charge_id: str, *, contact_id: int | None = None,
                  no_receipt: bool = True) -> Contribution:
    """Record one Stripe charge as it is now (CiviCRM's importcharge). Idempotent: importing it
    again changes nothing unless Stripe's side changed. Commits."""
    charge_id = (charge_id or "").strip()
    if not charge_id.startswith(("ch_", "py_")):
        raise ServiceError(f"{charge_id!r} is not a charge id (they start with ch_)", field="charge")
    contact = None
    if contact_id is not None:
        contact = db.session.get(Contact, parse_id(contact_id)) if parse_id(contact_id) else None
        if contact is None:
            raise ServiceError(f"no contact {contact_id}", field="contact_id")
    reader = StripeReader(processor, fresh=True)
    try:
        charge = reader.get("charges", charge_id)
    except GatewayError as err:
        audit.record("import.charge", object_type="charge", object_id=charge_id, processor_id=processor.id,
                     ok=False, message=str(err), stripe_request_id=err.request_id)
        raise ServiceError(f"Stripe: {err.message}") from err
    immediate()
    try:
        c, note = record_charge(reader, processor, charge, no_receipt=no_receipt, contact=contact)
    except GatewayError as err:
        db.session.rollback()
        raise ServiceError(f"Stripe: {err.message}") from err
    if c is None:
        db.session.rollback()
        raise ServiceError(f"nothing to import for {charge_id}: {note}")
    audit.record("import.charge", object_type="contribution", object_id=str(c.id), processor_id=processor.id,
                 parameters={"charge": charge_id, "contact_id": contact_id}, message=note,
                 stripe_request_id=reader.request_ids[0] if reader.request_ids else None, commit=False)
    db.session.commit()
    return c
