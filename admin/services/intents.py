"""StripePaymentIntent: every PaymentIntent paydesk created or heard of (CiviCRM's table)."""

from __future__ import annotations

import json

from sqlalchemy import select

from ..extensions import db
from ..models import PaymentProcessor, StripePaymentIntent
from ..stripe_shapes import currency_of, failure_message, minor_units, sid
from ..timeutil import from_unix
from . import contributions
from .contacts import linked_contact

# How far along an intent is; at the same Stripe second, state only moves forward.
RANK = {"requires_payment_method": 0, "requires_confirmation": 1, "requires_action": 2, "processing": 3,
        "requires_capture": 4, "succeeded": 5, "canceled": 5}
FINAL = ("succeeded", "canceled")
INCOMPLETE = ("requires_payment_method", "requires_confirmation", "requires_action", "processing",
              "requires_capture")


def by_intent_id(intent_id: str) -> StripePaymentIntent | None:
    return db.session.scalar(select(StripePaymentIntent).where(StripePaymentIntent.stripe_intent_id == intent_id))


def sync_intent(processor: PaymentProcessor, pi: dict, *, stamp: int,
                row: StripePaymentIntent | None = None) -> StripePaymentIntent:
    """Bring the tracked intent in line with ``pi`` unless a later state is recorded already.

    ``row``: the tracked intent when the caller has looked it up already.
    """
    row = row or by_intent_id(pi["id"])
    if row is None:
        row = StripePaymentIntent(stripe_intent_id=pi["id"], processor_id=processor.id,
                                  created_date=from_unix(pi.get("created")))
        db.session.add(row)
    elif not _moves_forward(row, pi.get("status"), stamp):
        return row
    row.status = pi.get("status")
    row.amount = minor_units(pi, "amount", default=None)
    row.currency = currency_of(pi) if pi.get("currency") is not None else None
    row.capture_method = pi.get("capture_method")
    row.customer_id = sid(pi.get("customer")) or row.customer_id
    row.description = (pi.get("description") or row.description or None)
    contact = linked_contact(processor.id, row.customer_id)
    row.contact_id = row.contact_id or (contact.id if contact else None)
    contribution = contributions.by_intent(processor.id, pi["id"])
    row.contribution_id = row.contribution_id or (contribution.id if contribution else None)
    error = failure_message(pi)
    if error:
        extra = json.loads(row.extra_data) if row.extra_data else {}
        extra["last_payment_error"] = error
        row.extra_data = json.dumps(extra)
    row.stripe_updated = max(row.stripe_updated or 0, int(stamp or 0))
    db.session.flush()
    return row


def _moves_forward(row: StripePaymentIntent, status: str | None, stamp: int) -> bool:
    if row.status in FINAL and status != row.status:
        return False
    if stamp < (row.stripe_updated or 0):
        return False
    if stamp == (row.stripe_updated or 0):
        return RANK.get(status or "", 0) >= RANK.get(row.status or "", 0)
    return True


def link_contribution(row: StripePaymentIntent | str | None, contribution) -> None:
    """Note the contribution an intent paid for (``row``: the tracked intent, or its id)."""
    if isinstance(row, str):
        row = by_intent_id(row)
    if row is not None and contribution is not None:
        row.contribution_id = row.contribution_id or contribution.id
        row.contact_id = row.contact_id or contribution.contact_id
