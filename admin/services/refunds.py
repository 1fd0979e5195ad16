"""Refunds staff make from paydesk: sent to Stripe, recorded at once, written to the audit log."""

from __future__ import annotations

import uuid

from ..extensions import db
from ..models import PaymentProcessor
from ..stripe_gateway import Gateway, GatewayError
from . import ServiceError, audit, contributions
from .stripe_reader import StripeReader


def refund_charge(processor: PaymentProcessor, charge_id: str, amount: int | None = None,
                  reason: str | None = None) -> dict:
    """Refund ``amount`` minor units (all that is left when None) of a charge.

    The negative payment is recorded straight away from Stripe's answer (the
    ``charge.refunded`` webhook that follows finds it done).
    """
    if amount is not None and amount <= 0:
        raise ServiceError("amount: a refund must be more than zero", field="amount")
    params: dict = {"charge": charge_id}
    if amount is not None:
        params["amount"] = int(amount)
    if reason:
        params["reason"] = reason
    gateway = Gateway.for_processor(processor)
    try:
        refund = gateway.create("refunds", params, idempotency_key=f"paydesk-refund-{charge_id}-{uuid.uuid4()}")
    except GatewayError as err:
        db.session.rollback()
        audit.record("refund", object_type="charge", object_id=charge_id, processor_id=processor.id,
                     parameters=params, ok=False, message=str(err), stripe_request_id=err.request_id)
        raise ServiceError(f"Stripe refused the refund: {err.message}") from err
    reader = StripeReader(processor, gateway, fresh=True)
    charge = reader.get("charges", charge_id)
    c = contributions.by_charge(processor.id, charge_id)
    if c is not None:
        contributions.add_charge_payment(reader, c, charge)
    audit.record("refund", object_type="charge", object_id=charge_id, processor_id=processor.id,
                 parameters=params, message=f"refund {refund['id']} {refund.get('status')}",
                 stripe_request_id=refund.request_id, commit=False)
    db.session.commit()
    return dict(refund)
