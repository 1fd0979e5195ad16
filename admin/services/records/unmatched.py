"""Payments that named a contribution they do not match, kept for staff (listed on ``/reconcile``).

A Checkout session's ``client_reference_id`` names the contribution it pays; on a Payment Link the payer
chooses that value. ``webhooks/handlers/checkout.py`` completes the named contribution only when the
session's amount, currency and (where both are known) customer are the contribution's, and the
contribution is not paid by something else already. Otherwise the named contribution is left alone, the
payment is recorded as a contribution of its own (no receipt) and noted here, until staff mark it reviewed.
"""

from __future__ import annotations

from sqlalchemy import func, select

from admin.dbutil import immediate, insert_ignore
from admin.errors import ServiceError
from admin.extensions import db
from admin.models import Contribution, UnmatchedPayment
from admin.money import format_money
from admin.services.core import audit
from admin.services.records.contributions import DONE
from admin.stripe_shapes import sid
from admin.timeutil import utcnow

SHOWN = 50


def mismatch(
    c: Contribution,
    session: dict,
    amount: int | None,
    currency: str | None,
    payment_intent_id: str | None = None,
    invoice_id: str | None = None,
    recur_id: int | None = None,
) -> str | None:
    """Why a session paying ``amount`` ``currency`` may not complete ``c`` (None: it may)."""
    why = []
    if amount is None or currency is None:
        why.append("the session does not say how much was paid")
    elif (amount, currency) != (c.amount, c.currency):
        why.append(
            f"{format_money(amount, currency)} paid, the contribution is {format_money(c.amount, c.currency)}"
        )
    customer = sid(session.get("customer"))
    if customer and c.customer_id and customer != c.customer_id:
        why.append(f"paid by customer {customer}, the contribution is {c.customer_id}'s")
    this_payment = bool(
        (payment_intent_id and c.payment_intent_id == payment_intent_id)
        or (invoice_id and c.invoice_id == invoice_id)
    )
    other_payment = bool(
        (payment_intent_id and c.payment_intent_id not in (None, payment_intent_id))
        or (invoice_id and c.invoice_id not in (None, invoice_id))
        or (recur_id and c.recur_id not in (None, recur_id))
    )
    if other_payment or (c.status in DONE and not this_payment):
        why.append(f"the contribution is {c.status.lower()}, by another payment")
    return "; ".join(why) or None


def note(
    processor_id: int,
    session: dict,
    named: Contribution,
    reason: str,
    amount: int | None,
    currency: str | None,
) -> None:
    """Keep the unmatched payment (once per session, however often its events arrive). Does not commit."""
    insert_ignore(
        UnmatchedPayment,
        {
            "processor_id": processor_id,
            "session_id": str(session.get("id"))[:255],
            "named_contribution_id": named.id,
            "amount": amount,
            "currency": currency,
            "customer_id": sid(session.get("customer")),
            "reason": f"Checkout session names contribution #{named.id}, which it does not match: {reason}"[
                :500
            ],
            "created_at": utcnow(),
        },
        ["processor_id", "session_id"],
    )


def recorded_on(processor_id: int, session: dict, c: Contribution | None) -> None:
    """The contribution the unmatched payment is recorded on. Does not commit."""
    if c is None:
        return
    row = db.session.scalar(
        select(UnmatchedPayment).where(
            UnmatchedPayment.processor_id == processor_id,
            UnmatchedPayment.session_id == str(session.get("id")),
        )
    )
    if row is not None:
        row.contribution_id = c.id


def open_payments(limit: int = SHOWN) -> tuple[list[UnmatchedPayment], int]:
    """The unmatched payments staff have not reviewed, newest first, and how many there are."""
    waiting = UnmatchedPayment.reviewed_at.is_(None)
    rows = list(
        db.session.scalars(
            select(UnmatchedPayment).where(waiting).order_by(UnmatchedPayment.id.desc()).limit(limit)
        )
    )
    total = db.session.scalar(select(func.count()).select_from(UnmatchedPayment).where(waiting)) or 0
    return rows, int(total)


def mark_reviewed(row_id: int | None) -> UnmatchedPayment:
    """Staff have looked at an unmatched payment: it leaves the list. Commits, with its audit entry."""
    immediate()
    row = db.session.get(UnmatchedPayment, row_id) if row_id is not None else None
    if row is None:
        db.session.rollback()
        raise ServiceError("there is no such unmatched payment")
    if row.reviewed_at is not None:
        db.session.rollback()
        raise ServiceError(f"the payment of session {row.session_id} was marked reviewed already")
    _, actor = audit.current_actor()
    row.reviewed_at, row.reviewed_by = utcnow(), actor[:255]
    audit.record(
        "reconcile.unmatched_reviewed",
        object_type="contribution",
        object_id=str(row.contribution_id) if row.contribution_id else None,
        processor_id=row.processor_id,
        parameters={"session": row.session_id, "named_contribution": row.named_contribution_id},
        commit=False,
    )
    db.session.commit()
    return row
