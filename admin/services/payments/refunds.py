"""Refunding a charge, in full or in part, from the payment's or the contribution's page or ``payments refund``.

The amount is checked against what is left to refund (the charge less the refunds paydesk has recorded)
before Stripe is asked, so an over-refund never leaves paydesk. Stripe's refund is recorded at once as a
negative payment (``trxn_id`` = the charge id, ``refund_id`` = the ``re_`` id); the ``charge.refunded`` and
``refund.*`` webhooks that follow find it by its refund id and add nothing, and when a webhook was first the
page's write finds its row instead (``contributions.record_refund``).

Two refunds of one charge at once (two staff members, a double-clicked CLI, two API clients) must not both pass
that check while Stripe is asked with no transaction open: the first claims the charge's row (a conditional
UPDATE of ``payment.refund_claimed_at``, committed before Stripe is asked, cleared once its answer is recorded)
and checks again under the claim; the second, finding it claimed, is refused before Stripe is asked and may try
again a moment later, against what is then left. A claim left by a process that died frees itself after
``CLAIM_STALE`` (longer than the gateway's retries of one request can take).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from sqlalchemy import func, or_, select, update

from admin.dbutil import immediate, lock_objects, parse_id, rowcount
from admin.errors import ServiceError, stripe_failure
from admin.extensions import db
from admin.models import COMPLETED, Payment, PaymentProcessor
from admin.services.core import audit
from admin.services.core.idempotency import idempotency_key, new_action_key
from admin.services.payments import common
from admin.services.records import contributions
from admin.stripe_gateway import Gateway, GatewayError
from admin.timeutil import utcnow

CLAIM_STALE = timedelta(minutes=5)  # the gateway's 4 attempts of 30 s and their backoff fit well inside
REASONS = ("duplicate", "fraudulent", "requested_by_customer")
LABELS = {
    "payment_id": "Payment",
    "amount": "Amount",
    "reason": "Reason",
    "metadata": "Metadata",
    "refund_application_fee": "Refund the application fee",
    "reverse_transfer": "Reverse the transfer",
}


@dataclass
class RefundRequest:
    """What staff ask for: one parameter class for the page's form, the CLI's options and the API."""

    payment_id: int
    amount: str | int | None = None  # None / empty: everything left to refund
    reason: str | None = None
    refund_application_fee: bool = False
    reverse_transfer: bool = False
    metadata: dict[str, str] = field(default_factory=dict)
    action_key: str | None = None

    @classmethod
    def from_form(cls, form: Mapping, payment_id: int | str | None = None) -> RefundRequest:
        pid = parse_id(str(payment_id if payment_id is not None else form.get("payment_id") or ""))
        if pid is None:
            raise ServiceError("Payment: the payment's number (# on its page)", field="payment_id")
        reason = (form.get("reason") or "").strip() or None
        if reason is not None and reason not in REASONS:
            raise ServiceError(f"Reason: one of {', '.join(REASONS)}", field="reason")
        return cls(
            payment_id=pid,
            amount=form.get("amount"),
            reason=reason,
            refund_application_fee=common.flag(form.get("refund_application_fee")),
            reverse_transfer=common.flag(form.get("reverse_transfer")),
            metadata=common.form_metadata(form),
            action_key=form.get("action_key") or None,
        )


@dataclass
class RefundPlan:
    """A refund checked against paydesk's records, not yet sent: what the confirmation shows."""

    payment: Payment
    amount: int
    refundable: int
    request: RefundRequest

    @property
    def currency(self) -> str:
        return self.payment.currency

    @property
    def full(self) -> bool:
        return self.amount == self.refundable

    def describe(self) -> str:
        rest = self.refundable - self.amount
        return (
            f"Refund {common.shown(self.amount, self.currency)} of charge {self.payment.charge_id}"
            + (f"; {common.shown(rest, self.currency)} stays refundable" if rest else " (all that is left)")
            + (f", reason {self.request.reason}" if self.request.reason else "")
            + "."
        )

    def checked(self) -> dict[str, Any]:
        """Exactly what will run, as ``RefundRequest`` fields (the amount resolved, in minor units, and the
        staff action's key): what a confirmation stores and its button runs, never values posted again."""
        r = self.request
        return {
            "payment_id": self.payment.id,
            "amount": self.amount,
            "reason": r.reason,
            "refund_application_fee": r.refund_application_fee,
            "reverse_transfer": r.reverse_transfer,
            "metadata": dict(r.metadata),
            "action_key": r.action_key or new_action_key(),
        }


@dataclass
class RefundOutcome:
    payment: Payment  # the negative payment
    refund_id: str
    message: str
    request_id: str | None = None
    recorded_now: bool = True  # False: a webhook had recorded it already


def refundable(pay: Payment) -> int:
    """What is left to refund of a charge: its amount less the refunds recorded on it that count."""
    refunded = db.session.scalar(
        select(func.coalesce(func.sum(Payment.amount), 0)).where(
            Payment.processor_id == pay.processor_id,
            Payment.charge_id == pay.charge_id,
            Payment.refund_id.is_not(None),
            Payment.status == contributions.PAYMENT_REFUNDED,
        )
    )
    return max(0, pay.amount + int(refunded or 0))


def charge_row(payment_id: int) -> Payment:
    pay = db.session.get(Payment, payment_id)
    if pay is None:
        raise ServiceError(f"Payment: paydesk has no payment #{payment_id}", field="payment_id")
    if pay.refund_id or pay.amount <= 0:
        raise ServiceError(
            f"Payment: #{pay.id} is a refund; refund the charge it belongs to ({pay.charge_id})",
            field="payment_id",
        )
    if pay.status != COMPLETED or not pay.charge_id:
        raise ServiceError(
            f"Payment: #{pay.id} is {pay.status}; only a completed charge can be refunded", field="payment_id"
        )
    return pay


def plan_refund(req: RefundRequest) -> RefundPlan:
    """Check a refund against paydesk's records (nothing is sent): a ``ServiceError`` naming the field."""
    pay = charge_row(req.payment_id)
    left = refundable(pay)
    if left <= 0:
        raise ServiceError(f"Amount: charge {pay.charge_id} is refunded in full already", field="amount")
    amount = common.money(req.amount, pay.currency, "amount", "Amount", required=False)
    if amount is None:
        amount = left
    if amount > left:
        raise ServiceError(
            f"Amount: {common.shown(amount, pay.currency)} is more than the "
            f"{common.shown(left, pay.currency)} left to refund of {pay.charge_id}",
            field="amount",
        )
    return RefundPlan(pay, amount, left, req)


def _claim(pay: Payment) -> None:
    """Claim the charge's row for one refund (its own committed transaction), or a ``ServiceError`` when
    another refund of it is being sent to Stripe now."""
    charge_id, payment_id = pay.charge_id, pay.id
    db.session.rollback()  # no transaction held open while Stripe is asked
    immediate()
    now = utcnow()
    claimed = rowcount(
        db.session.execute(
            update(Payment)
            .where(
                Payment.id == payment_id,
                or_(Payment.refund_claimed_at.is_(None), Payment.refund_claimed_at < now - CLAIM_STALE),
            )
            .values(refund_claimed_at=now)
            .execution_options(synchronize_session=False)
        )
    )
    db.session.commit()
    if claimed != 1:
        raise ServiceError(
            f"Payment: another refund of {charge_id} is being sent to Stripe right now; look at the payment "
            "again in a moment to see what is left to refund",
            field="payment_id",
        )


def _release(payment_id: int) -> None:
    """Free the charge's row for the next refund (whatever this one's end: recorded, refused, failed)."""
    db.session.rollback()  # a write that failed half way is not kept
    immediate()
    db.session.execute(
        update(Payment)
        .where(Payment.id == payment_id)
        .values(refund_claimed_at=None)
        .execution_options(synchronize_session=False)
    )
    db.session.commit()


def refund(processor: PaymentProcessor, req: RefundRequest) -> RefundOutcome:
    """Refund in Stripe, then record the negative payment and the audit entry in one transaction. Stripe's
    refusal is audited too and raised as a ``ServiceError`` with its message and request id. One refund of a
    charge at a time (see the module docstring)."""
    pay = plan_refund(req).payment
    if pay.processor_id != processor.id:
        raise ServiceError(f"Payment: #{pay.id} belongs to another processor", field="payment_id")
    payment_id = pay.id
    _claim(pay)
    try:
        return _refund_claimed(processor, req)
    finally:
        _release(payment_id)


def _refund_claimed(processor: PaymentProcessor, req: RefundRequest) -> RefundOutcome:
    plan = plan_refund(req)  # again, under the claim: what is left once any refund before it is recorded
    pay = plan.payment
    charge_id, contribution_id = pay.charge_id, pay.contribution_id
    assert charge_id is not None  # plan_refund (charge_row) refuses a payment with no charge
    key = idempotency_key("refund", charge_id, req.action_key, plan.amount)
    params: dict[str, Any] = {"charge": charge_id, "amount": plan.amount}
    if req.reason:
        params["reason"] = req.reason
    if req.refund_application_fee:
        params["refund_application_fee"] = True
    if req.reverse_transfer:
        params["reverse_transfer"] = True
    if req.metadata:
        params["metadata"] = req.metadata
    parameters = {
        "charge": charge_id,
        "payment": pay.id,
        "amount": plan.amount,
        "currency": pay.currency,
        "reason": req.reason,
        "refund_application_fee": req.refund_application_fee,
        "reverse_transfer": req.reverse_transfer,
        "metadata": req.metadata,
        "idempotency_key": key,
    }
    db.session.rollback()  # no transaction held open while Stripe is asked
    try:
        res = Gateway.for_processor(processor).create("refunds", params, idempotency_key=key)
    except GatewayError as err:
        immediate()
        audit.record(
            "payment.refund",
            object_type="contribution",
            object_id=str(contribution_id),
            processor_id=processor.id,
            parameters=parameters,
            ok=False,
            message=err.message,
            stripe_request_id=err.request_id,
            commit=True,
        )
        raise stripe_failure(err, with_request=True, doing=f"refused to refund {charge_id}") from None
    r = dict(res)
    immediate()
    lock_objects([charge_id])
    c = db.session.get_one(Payment, pay.id).contribution
    row, made = contributions.record_refund(c, charge_id, r)
    message = (
        f"Refunded {common.shown(plan.amount, pay.currency)} of {charge_id} ({r['id']})"
        + ("" if made else "; Stripe's webhook had recorded it already")
        + "."
    )
    audit.record(
        "payment.refund",
        object_type="contribution",
        object_id=str(c.id),
        processor_id=processor.id,
        parameters={**parameters, "refund": r["id"]},
        message=message,
        stripe_request_id=res.request_id,
        commit=False,
    )
    db.session.commit()
    return RefundOutcome(row, r["id"], message, res.request_id, made)
