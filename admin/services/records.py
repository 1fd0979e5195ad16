"""Read-only queries over the records, shared by the CLI listings and (later) the pages.

Each ``list_*`` takes the filters staff use and returns plain dicts carrying
the Stripe ids, newest first.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Select, func, or_, select

from ..extensions import db
from ..models import (
    Contact,
    Contribution,
    ContributionRecur,
    Payment,
    StripeCustomer,
    StripeEvent,
)
from ..money import format_money


def _page(q: Select, limit: int | None) -> list:
    return list(db.session.scalars(q.limit(limit) if limit else q))


def _iso(dt: datetime | None) -> str | None:
    return dt.isoformat(timespec="seconds") if dt else None


def contact_dict(c: Contact) -> dict[str, Any]:
    return {"id": c.id, "display_name": c.display_name, "email": c.email, "postal_code": c.postal_code,
            "source": c.source, "stripe_customer_ids": [s.customer_id for s in c.stripe_customers],
            "created_at": _iso(c.created_at)}


def list_contacts(*, search: str | None = None, customer_id: str | None = None, limit: int | None = 50) -> list[dict]:
    q = select(Contact).where(Contact.is_deleted.is_(False)).order_by(Contact.id.desc())
    if search:
        like = f"%{search.lower()}%"
        q = q.where(or_(func.lower(Contact.display_name).like(like), func.lower(Contact.email).like(like)))
    if customer_id:
        q = q.where(Contact.id.in_(select(StripeCustomer.contact_id).where(StripeCustomer.customer_id == customer_id)))
    return [contact_dict(c) for c in _page(q, limit)]


def contribution_dict(c: Contribution) -> dict[str, Any]:
    return {"id": c.id, "contact_id": c.contact_id, "contact": c.contact.display_name if c.contact else None,
            "amount": c.amount, "currency": c.currency, "display_amount": format_money(c.amount, c.currency),
            "status": c.status, "trxn_id": c.trxn_id, "invoice_id": c.invoice_id,
            "payment_intent_id": c.payment_intent_id, "customer_id": c.customer_id,
            "recur_id": c.recur_id, "subscription_id": c.recur.subscription_id if c.recur else None,
            "fee_amount": c.fee_amount, "net_amount": c.net_amount, "refunded_amount": c.refunded_amount,
            "receive_date": _iso(c.receive_date), "failure_message": c.failure_message, "source": c.source,
            "processor_id": c.processor_id, "receipt_sent_at": _iso(c.receipt_sent_at)}


def list_contributions(*, status: str | None = None, contact_id: int | None = None, recur_id: int | None = None,
                       trxn_id: str | None = None, processor_id: int | None = None, since: datetime | None = None,
                       until: datetime | None = None, limit: int | None = 50) -> list[dict]:
    q = select(Contribution).order_by(Contribution.receive_date.desc(), Contribution.id.desc())
    for col, val in ((Contribution.status, status), (Contribution.contact_id, contact_id),
                     (Contribution.recur_id, recur_id), (Contribution.processor_id, processor_id)):
        if val is not None:
            q = q.where(col == val)
    if trxn_id:
        q = q.where(or_(Contribution.trxn_id == trxn_id, Contribution.invoice_id == trxn_id,
                        Contribution.payment_intent_id == trxn_id))
    if since:
        q = q.where(Contribution.receive_date >= since)
    if until:
        q = q.where(Contribution.receive_date < until)
    return [contribution_dict(c) for c in _page(q, limit)]


def payment_dict(p: Payment) -> dict[str, Any]:
    return {"id": p.id, "contribution_id": p.contribution_id, "trxn_id": p.trxn_id, "charge_id": p.charge_id,
            "refund_id": p.refund_id, "amount": p.amount, "fee": p.fee, "net": p.net, "currency": p.currency,
            "display_amount": format_money(p.amount, p.currency), "status": p.status,
            "payment_date": _iso(p.payment_date), "processor_id": p.processor_id}


def list_payments(*, contribution_id: int | None = None, charge_id: str | None = None,
                  processor_id: int | None = None, limit: int | None = 50) -> list[dict]:
    q = select(Payment).order_by(Payment.payment_date.desc(), Payment.id.desc())
    if contribution_id is not None:
        q = q.where(Payment.contribution_id == contribution_id)
    if charge_id:
        q = q.where(Payment.charge_id == charge_id)
    if processor_id is not None:
        q = q.where(Payment.processor_id == processor_id)
    return [payment_dict(p) for p in _page(q, limit)]


def recur_dict(r: ContributionRecur) -> dict[str, Any]:
    return {"id": r.id, "contact_id": r.contact_id, "contact": r.contact.display_name if r.contact else None,
            "subscription_id": r.subscription_id, "customer_id": r.customer_id, "amount": r.amount,
            "currency": r.currency, "display_amount": format_money(r.amount, r.currency), "interval": r.interval,
            "interval_count": r.interval_count, "status": r.status, "stripe_status": r.stripe_status,
            "start_date": _iso(r.start_date), "next_sched_date": _iso(r.next_sched_date),
            "cancel_date": _iso(r.cancel_date), "failure_count": r.failure_count, "processor_id": r.processor_id}


def list_recurring(*, status: str | None = None, subscription_id: str | None = None,
                   processor_id: int | None = None, limit: int | None = 50) -> list[dict]:
    q = select(ContributionRecur).order_by(ContributionRecur.id.desc())
    if status:
        q = q.where(ContributionRecur.status == status)
    if subscription_id:
        q = q.where(ContributionRecur.subscription_id == subscription_id)
    if processor_id is not None:
        q = q.where(ContributionRecur.processor_id == processor_id)
    return [recur_dict(r) for r in _page(q, limit)]


def event_dict(e: StripeEvent, raw: bool = False) -> dict[str, Any]:
    out = {"id": e.id, "event_id": e.event_id, "type": e.type, "created": e.created, "status": e.status,
           "status_reason": e.status_reason, "last_error": e.last_error, "attempts": e.attempts,
           "source": e.source, "processor_id": e.processor_id, "customer_id": e.customer_id,
           "subscription_id": e.subscription_id, "invoice_id": e.invoice_id, "charge_id": e.charge_id,
           "payment_intent_id": e.payment_intent_id, "received_at": _iso(e.received_at),
           "processed_at": _iso(e.processed_at)}
    if raw:
        import json

        try:
            out["raw"] = json.loads(e.raw)
        except (TypeError, ValueError, RecursionError):  # stored before the door checked bodies: report it
            out["raw"] = None
            out["raw_error"] = "the stored body is not valid JSON"
    return out


def list_local_events(*, processor_id: int | None = None, type_: str | None = None, status: str | None = None,
                      subscription_id: str | None = None, starting_after: str | None = None,
                      limit: int = 10, raw: bool = False) -> list[dict]:
    """Stored events, newest first (Listevents with source=local). ``starting_after`` is an event id."""
    q = select(StripeEvent).order_by(StripeEvent.created.desc(), StripeEvent.id.desc())
    if processor_id is not None:
        q = q.where(StripeEvent.processor_id == processor_id)
    if type_:
        q = q.where(StripeEvent.type == type_)
    if status:
        q = q.where(StripeEvent.status == status)
    if subscription_id:
        q = q.where(StripeEvent.subscription_id == subscription_id)
    if starting_after:
        anchor = db.session.scalar(select(StripeEvent).where(StripeEvent.event_id == starting_after))
        if anchor is not None:
            q = q.where(or_(StripeEvent.created < anchor.created,
                            (StripeEvent.created == anchor.created) & (StripeEvent.id < anchor.id)))
    return [event_dict(e, raw) for e in _page(q, limit)]
