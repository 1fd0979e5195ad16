"""Payment operations for write tokens: charge a saved customer, capture an authorisation (by pi_ or ch_),
refund a charge. The same services as the staff pages and ``payments charge|capture|refund``; the body is
checked by its schema, then by the service's own plan (a refund above what is left to refund is refused
before Stripe is asked). A client's ``Idempotency-Key`` is honoured (``idempotency``), and the Stripe
idempotency key of the operation is made from it, so a retry after a lost answer reaches Stripe with the
same key. Audited by the services, with the token's name as the actor."""

from __future__ import annotations

from typing import Any

from admin.errors import StripeFailure
from admin.models import Contribution, Payment
from admin.services.intents import ops
from admin.services.payments import charges, common, refunds
from admin.services.settings.processors import get_processor

from . import schemas
from .actions import STRIPE_WRITE, ProcessorQuery, WriteHeaders, request_body, request_processor
from .blueprint import bp
from .errors import ApiError
from .idempotency import idempotent, stripe_key
from .spec import responses, spec

CARD_WRITE = (402, *STRIPE_WRITE)  # a charge may be declined


def _records(c: Contribution | None, pay: Payment | None) -> dict[str, Any]:
    return {
        "contribution": schemas.ContributionOut.model_validate(c) if c is not None else None,
        "payment": schemas.PaymentOut.model_validate(pay) if pay is not None else None,
    }


@bp.post("/charges")
@spec.validate(
    query=ProcessorQuery,
    json=schemas.ChargeBody,
    headers=WriteHeaders,
    resp=responses(201, schemas.ChargeOut, extra=CARD_WRITE),
    tags=["payments"],
    operation_id="charge_customer",
)
@idempotent
def charge_customer():
    """Charge a saved customer (or authorise only): a contribution, and its payment once the card is charged

    A declined card is 402: the contribution is kept as Failed (its number is in the message)."""
    processor = request_processor()
    body = request_body()
    req = charges.ChargeRequest(
        contact_id=body.contact_id,  # None: the contact linked to customer_id
        amount=body.amount,
        currency=body.currency,
        description=body.description,
        statement_descriptor_suffix=body.statement_descriptor_suffix,
        capture=body.capture,
        expires_after=body.expires_after,
        application_fee=body.application_fee,
        destination=body.destination,
        transfer_group=body.transfer_group,
        metadata=common.metadata_rows(body.metadata.keys(), body.metadata.values()),
        customer_id=body.customer_id,
        payment_method=body.payment_method,
        action_key=stripe_key(f"charge-{processor.id}"),
    )
    out = charges.charge(processor, req)
    c = out.contribution
    if not out.ok:
        f = out.failure
        raise StripeFailure(
            f"{out.message} Contribution #{c.id} is {c.status}.",
            request_id=out.request_id,
            transient=f.transient if f else False,
            card=f.card if f else True,  # not refused, but not paid either: 3-D Secure needed, declined later
        )
    pay = charges.charged_payment(c) if out.status == "succeeded" else None
    return schemas.ChargeOut(
        status=out.status,
        message=out.message,
        payment_intent_id=out.intent_id,
        charge_id=pay.charge_id if pay else None,
        stripe_request_id=out.request_id,
        **_records(c, pay),
    ).model_dump(mode="json"), 201


@bp.post("/captures")
@spec.validate(
    query=ProcessorQuery,
    json=schemas.CaptureBody,
    headers=WriteHeaders,
    resp=responses(200, schemas.CaptureOut, extra=STRIPE_WRITE),
    tags=["payments"],
    operation_id="capture_payment",
)
@idempotent
def capture_payment():
    """Capture an authorised payment in full or in part, by its PaymentIntent (pi_) or charge (ch_) id"""
    processor = request_processor()
    body = request_body()
    out = ops.capture(
        processor, body.id, amount=body.amount, action_key=stripe_key(f"capture-{processor.id}")
    )
    if out.outcome == ops.GONE_OUTCOME:
        raise ApiError(404, "not_found", out.message, "id")
    if out.outcome == ops.ALREADY_CANCELLED:
        raise ApiError(400, "invalid_request", out.message, "id")
    if not out.ok:
        raise StripeFailure(out.message, request_id=out.request_id, transient=out.transient)
    c, pay = charges.records_of(processor.id, out.intent_id)
    return schemas.CaptureOut(
        id=out.intent_id,
        outcome=out.outcome,
        amount=out.amount,
        currency=out.currency,
        message=out.message,
        charge_id=pay.charge_id if pay else None,
        stripe_request_id=out.request_id,
        **_records(c, pay),
    ).model_dump(mode="json")


@bp.post("/refunds")
@spec.validate(
    json=schemas.RefundBody,
    headers=WriteHeaders,
    resp=responses(201, schemas.RefundOut, extra=STRIPE_WRITE),
    tags=["payments"],
    operation_id="refund_payment",
)
@idempotent
def refund_payment():
    """Refund a charge in full or in part (more than is left to refund is refused before Stripe is asked)"""
    body = request_body()
    req = refunds.RefundRequest(
        payment_id=body.payment_id,
        amount=body.amount,
        reason=body.reason,
        refund_application_fee=body.refund_application_fee,
        reverse_transfer=body.reverse_transfer,
        metadata=common.metadata_rows(body.metadata.keys(), body.metadata.values()),
    )
    plan = refunds.plan_refund(req)  # paydesk's records first: nothing is sent when this refuses
    processor = get_processor(plan.payment.processor_id)
    req.action_key = stripe_key(f"refund-{processor.id}")
    out = refunds.refund(processor, req)
    pay = out.payment
    return schemas.RefundOut(
        refund_id=out.refund_id,
        charge_id=pay.charge_id or pay.trxn_id,
        amount=-pay.amount,
        currency=pay.currency,
        recorded_now=out.recorded_now,
        message=out.message,
        payment=schemas.PaymentOut.model_validate(pay),
        contribution=schemas.ContributionOut.model_validate(pay.contribution),
        stripe_request_id=out.request_id,
    ).model_dump(mode="json"), 201
