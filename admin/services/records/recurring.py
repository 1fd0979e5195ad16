"""Recurring contributions, kept in step with Stripe subscriptions."""

from __future__ import annotations

from sqlalchemy import bindparam, select

from admin.extensions import db
from admin.models import (
    RECUR_CANCELLED,
    RECUR_COMPLETED,
    RECUR_FAILING,
    RECUR_IN_PROGRESS,
    RECUR_PENDING,
    ContributionRecur,
    PaymentProcessor,
)
from admin.services.core.stripe_reader import StripeReader
from admin.services.records.contacts import contact_for_customer
from admin.stripe_shapes import sid, subscription_terms
from admin.timeutil import from_unix

STATUS_OF = {
    "active": RECUR_IN_PROGRESS,
    "trialing": RECUR_IN_PROGRESS,
    "past_due": RECUR_FAILING,
    "unpaid": RECUR_FAILING,
    "incomplete": RECUR_PENDING,
    "paused": RECUR_PENDING,
    "canceled": RECUR_CANCELLED,
    "incomplete_expired": RECUR_CANCELLED,
}
ENDED = ("canceled", "incomplete_expired")


_BY_SUBSCRIPTION = select(ContributionRecur).where(  # built once: every subscription and invoice event asks
    ContributionRecur.processor_id == bindparam("processor_id"),
    ContributionRecur.subscription_id == bindparam("subscription_id"),
)


def by_subscription(processor_id: int, subscription_id: str) -> ContributionRecur | None:
    return db.session.scalar(
        _BY_SUBSCRIPTION, {"processor_id": processor_id, "subscription_id": subscription_id}
    )


def ensure_recur(
    reader: StripeReader, processor: PaymentProcessor, subscription_id: str
) -> ContributionRecur:
    """The recurring contribution for a subscription, fetched from Stripe and created on first sight."""
    recur = by_subscription(processor.id, subscription_id)
    if recur is not None:
        return recur
    return sync_subscription(
        reader, processor, reader.get("subscriptions", subscription_id), stamp=0, looked_up=True
    )


def is_stale(recur: ContributionRecur | None, stamp: int) -> bool:
    """True when a newer state of this subscription (``recur``: its recurring contribution) has been
    applied already."""
    return recur is not None and stamp < (recur.stripe_updated or 0)


def sync_subscription(
    reader: StripeReader,
    processor: PaymentProcessor,
    sub: dict,
    *,
    stamp: int,
    recur: ContributionRecur | None = None,
    looked_up: bool = False,
    flush: bool = True,
) -> ContributionRecur:
    """Apply a subscription's state. ``stamp`` is when Stripe produced it (event ``created``).
    ``looked_up``: the caller has just looked its recurring contribution up in this transaction (``recur``,
    None when there is none yet). ``flush=False``: written with the caller's next flush (a handler's, when
    its event commits; a new one has no id until then).

    An ended subscription never comes back (Stripe cannot restart one), so a
    late "updated" event cannot undo a cancellation, whatever the order.
    """
    if not looked_up:
        recur = by_subscription(processor.id, sub["id"])
    customer_id = sid(sub.get("customer"))
    if recur is None:
        recur = ContributionRecur(
            processor_id=processor.id,
            subscription_id=sub["id"],
            customer_id=customer_id,
            contact=contact_for_customer(reader, processor, customer_id),
        )
        db.session.add(recur)
    elif recur.stripe_status in ENDED and sub.get("status") not in ENDED:
        return recur
    terms = subscription_terms(sub)
    recur.customer_id = recur.customer_id or customer_id
    recur.amount = terms["amount"]
    recur.currency = terms["currency"]
    recur.interval = terms["interval"]
    recur.interval_count = terms["interval_count"]
    recur.stripe_status = sub.get("status")
    new_status = STATUS_OF.get(sub.get("status") or "", RECUR_PENDING)
    if sub.get("status") in ENDED and sub.get("cancel_at") and not sub.get("canceled_at"):
        new_status = RECUR_COMPLETED  # ran to its planned end
    recur.status = new_status
    recur.start_date = from_unix(sub.get("start_date") or sub.get("created"))
    recur.next_sched_date = from_unix(terms["period_end"]) if new_status == RECUR_IN_PROGRESS else None
    recur.cancel_date = (
        from_unix(sub.get("canceled_at") or sub.get("ended_at")) if sub.get("status") in ENDED else None
    )
    recur.stripe_updated = max(recur.stripe_updated or 0, int(stamp or 0))
    if flush:
        db.session.flush()
    return recur
