"""Recording a charge as Stripe has it: on its invoice's contribution (recurring) or as a
one-off. Used by the ``charge.*`` handlers, by imports and by reconciliation."""

from __future__ import annotations

from admin.models import Contact, Contribution, PaymentProcessor
from admin.services.core.stripe_reader import StripeReader
from admin.services.intents import queries as intents
from admin.services.records import contributions
from admin.stripe_shapes import sid


def record_charge(
    reader: StripeReader,
    processor: PaymentProcessor,
    charge: dict,
    *,
    no_receipt: bool = False,
    contact: Contact | None = None,
) -> tuple[Contribution | None, str | None]:
    """Record a charge's current state where it belongs. Returns (contribution, note); a None
    contribution means there is nothing to record yet and the note says why."""
    invoice_id = contributions.invoice_of_charge(reader, processor, charge)
    if invoice_id:
        c = contributions.settle_invoice(reader, processor, invoice_id, no_receipt=no_receipt)
        if c is None:
            return None, f"invoice {invoice_id} is not paid; its invoice events will record it"
        return c, f"recurring payment for {invoice_id}"
    if charge.get("status") != "succeeded":
        return None, f"charge is {charge.get('status')}"
    if not charge.get("captured", True):
        return None, "charge not captured yet; charge.captured will complete it"
    c = contributions.record_one_off_charge(reader, processor, charge, no_receipt=no_receipt, contact=contact)
    intents.link_contribution(sid(charge.get("payment_intent")) or "", c)
    return c, None
