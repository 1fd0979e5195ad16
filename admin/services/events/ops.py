"""What staff do to events: replay one (always fetched from Stripe first), mark one ignored,
pull Stripe's past events into the log (populate), replay what Stripe has paid and paydesk
has not (retry all), and delete old processed events (cleanup).

Each staff action writes an audit entry in the transaction that makes the change.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import delete, or_, select, update

from admin.dbutil import immediate, rowcount
from admin.errors import ServiceError, check_text
from admin.extensions import db
from admin.models import (
    EV_ERROR,
    EV_IGNORED,
    EV_LOGGED,
    EV_PROCESSING,
    EV_QUEUED,
    EV_SUCCESS,
    Contribution,
    Payment,
    PaymentProcessor,
    StripeEvent,
)
from admin.services.core import audit
from admin.services.core.stripe_reader import StripeReader
from admin.services.events.queries import stripe_filter_params
from admin.services.records.contributions import DONE
from admin.stripe_gateway import Gateway, GatewayError
from admin.stripe_shapes import sid
from admin.timeutil import to_unix, utcnow
from admin.webhooks import pipeline
from admin.webhooks.ingest import store_event

CLEANABLE = (EV_SUCCESS, EV_IGNORED, EV_LOGGED)
# Events whose replay records a payment, best first.
PAYMENT_EVENT_TYPES = (
    "invoice.paid",
    "invoice.payment_succeeded",
    "payment_intent.succeeded",
    "charge.succeeded",
    "charge.captured",
    "checkout.session.completed",
)


@dataclass
class ReplayResult:
    event: StripeEvent
    status: str
    message: str | None
    request_id: str | None
    fetched: bool  # Stripe still had the event

    @property
    def ok(self) -> bool:
        return self.status not in (EV_ERROR, EV_QUEUED)


def _busy(row: StripeEvent) -> bool:
    return row.status == EV_PROCESSING and row.locked_until is not None and row.locked_until > utcnow()


def fetch_event(processor: PaymentProcessor, event_id: str) -> tuple[dict | None, str | None]:
    """The event as Stripe has it now, and the request id; (None, None) when Stripe no longer
    has it (events are kept for 30 days). Other Stripe failures raise ``GatewayError``."""
    try:
        ev = Gateway.for_processor(processor).retrieve("events", event_id)
    except GatewayError as err:
        if err.not_found:
            return None, err.request_id
        raise
    return dict(ev), ev.request_id


def replay(
    processor: PaymentProcessor,
    *,
    row: StripeEvent | None = None,
    event_id: str | None = None,
    no_receipt: bool = False,
    worker: str | None = None,
) -> ReplayResult:
    """Fetch the event from Stripe, then run its handler now (CiviCRM's Stripe.Ipn).

    A stored event is replayed with its objects re-fetched from Stripe; an event paydesk has
    never stored is stored first (source ``replay``). Writes an audit entry in the transaction
    that records the outcome. Raises ``ServiceError`` when there is nothing to replay."""
    event_id = event_id or (row.event_id if row is not None else None)
    if not event_id:
        raise ServiceError("say which event to replay")
    try:
        fresh, request_id = fetch_event(processor, event_id)
    except GatewayError as err:
        _audit_replay_refused(
            processor, row, event_id, f"could not fetch the event from Stripe: {err}", err.request_id
        )
        raise ServiceError(
            f"Could not fetch {event_id} from Stripe: {err.message}. Nothing was changed; try again."
        ) from err
    if row is None:
        row = db.session.scalar(
            select(StripeEvent).where(
                StripeEvent.processor_id == processor.id, StripeEvent.event_id == event_id
            )
        )
    if row is None:
        if fresh is None:
            raise ServiceError(
                f"Stripe has no event {event_id} (events are kept for 30 days) and paydesk never stored it"
            )
        store_event(processor, fresh, source="replay", status=EV_LOGGED)
        row = db.session.scalars(
            select(StripeEvent).where(
                StripeEvent.processor_id == processor.id, StripeEvent.event_id == event_id
            )
        ).one()
    immediate()
    db.session.refresh(row, with_for_update=True)  # PostgreSQL: a worker's claim skips the row meanwhile
    if _busy(row):
        db.session.rollback()
        raise ServiceError(
            f"{event_id} is being processed by {row.locked_by} right now; try again in a moment"
        )
    worker = worker or pipeline.worker_name()
    held = pipeline.take(row, worker, lease=timedelta(seconds=300), refetch=True, no_receipt=bool(no_receipt))
    note = None if fresh is not None else "Stripe no longer has this event; replayed from the stored copy"
    _, actor = audit.current_actor()

    def write_audit(r: pipeline.EventRow, error: str | None) -> None:
        audit.record(
            "event.replay",
            object_type="event",
            object_id=str(r.id),
            processor_id=processor.id,
            parameters={"event_id": r.event_id, "type": r.type, "no_receipt": bool(no_receipt)},
            ok=error is None and r.status != EV_ERROR,
            message=error or r.status_reason or note,
            stripe_request_id=request_id,
            commit=False,
        )

    status = pipeline.process(held, worker, actor=actor, on_done=write_audit)
    db.session.refresh(row)
    if status is None:  # taken from us between our claim and the handler (a lease that ran out)
        raise ServiceError(
            f"{event_id} was taken by {row.locked_by or 'the worker'} while being replayed; "
            f"it is {row.status} now"
        )
    return ReplayResult(
        row, status or row.status, row.last_error or row.status_reason or note, request_id, fresh is not None
    )


def _audit_replay_refused(
    processor: PaymentProcessor, row: StripeEvent | None, event_id: str, message: str, request_id: str | None
) -> None:
    db.session.rollback()
    audit.record(
        "event.replay",
        object_type="event",
        object_id=str(row.id) if row else event_id,
        processor_id=processor.id,
        parameters={"event_id": event_id},
        ok=False,
        message=message,
        stripe_request_id=request_id,
    )


def check_reason(reason: str | None) -> str:
    """Why staff mark events ignored: some plain text of at most 500 characters."""
    reason = check_text(reason, "Reason", "reason", multiline=True)
    if not reason:
        raise ServiceError("Say why the event is to be ignored", field="reason")
    if len(reason) > 500:
        raise ServiceError("Keep the reason under 500 characters", field="reason")
    return reason


def mark_ignored(row: StripeEvent, reason: str) -> StripeEvent:
    """Staff decide an event needs nothing done. Commits, with its audit entry."""
    reason = check_reason(reason)
    immediate()
    db.session.refresh(row, with_for_update=True)
    if _busy(row):
        db.session.rollback()
        raise ServiceError(f"{row.event_id} is being processed right now; try again in a moment")
    _, actor = audit.current_actor()
    before = row.status
    row.status, row.status_reason = EV_IGNORED, f"marked ignored by {actor}: {reason}"
    row.locked_by = row.locked_until = None
    row.processed_at = utcnow()
    audit.record(
        "event.ignore",
        object_type="event",
        object_id=str(row.id),
        processor_id=row.processor_id,
        parameters={"event_id": row.event_id, "reason": reason, "was": before},
        commit=False,
    )
    db.session.commit()
    return row


# -- populate --------------------------------------------------------------------------------


def stripe_events(
    processor: PaymentProcessor,
    types: list[str],
    *,
    starting_after: str | None = None,
    since: datetime | None = None,
) -> Iterator[dict]:
    """Every event Stripe still has (newest first), from after ``starting_after``."""
    from admin.services.events.queries import EventFilter

    params = stripe_filter_params(EventFilter(type=types, since=since))
    for page in StripeReader(processor).pages("events", starting_after=starting_after, **params):
        yield from page


def pull_event(processor: PaymentProcessor, event: dict, *, queue: bool) -> str:
    """Store one event pulled from Stripe: "new", "queued" (a logged one now queued) or "present"."""
    if store_event(processor, event, source="populate", status=EV_QUEUED if queue else EV_LOGGED):
        return "new"
    if queue:
        changed = rowcount(
            db.session.execute(
                update(StripeEvent)
                .where(
                    StripeEvent.processor_id == processor.id,
                    StripeEvent.event_id == event["id"],
                    StripeEvent.status == EV_LOGGED,
                )
                .values(status=EV_QUEUED, next_attempt_at=utcnow(), refetch=True)
            )
        )
        db.session.commit()
        if changed:
            return "queued"
    return "present"


# -- retry all -------------------------------------------------------------------------------


def unrecorded_charges(
    processor: PaymentProcessor, *, days: int = 30, starting_after: str | None = None
) -> Iterator[dict]:
    """Charges Stripe has as paid (succeeded and captured, within ``days``) that paydesk has not
    recorded as a completed payment, newest first, from after ``starting_after``."""
    since = to_unix(utcnow() - timedelta(days=days))
    for page in StripeReader(processor).pages(
        "charges", starting_after=starting_after, created={"gte": since}
    ):
        paid = [c for c in page if c.get("status") == "succeeded" and c.get("captured", True)]
        recorded = set(
            db.session.scalars(
                select(Payment.charge_id)
                .join(Contribution)
                .where(
                    Payment.processor_id == processor.id,
                    Payment.charge_id.in_([c["id"] for c in paid]),
                    Payment.refund_id.is_(None),
                    Contribution.status.in_(DONE),
                )
            )
        )
        yield from (c for c in paid if c["id"] not in recorded)


def event_for_charge(processor: PaymentProcessor, charge: dict) -> StripeEvent | None:
    """The stored event whose replay would record this charge (an invoice's or the charge's own)."""
    ids = [x for x in (charge["id"], sid(charge.get("payment_intent")), sid(charge.get("invoice"))) if x]
    rows = list(
        db.session.scalars(
            select(StripeEvent)
            .where(
                StripeEvent.processor_id == processor.id,
                StripeEvent.type.in_(PAYMENT_EVENT_TYPES),
                or_(
                    StripeEvent.charge_id.in_(ids),
                    StripeEvent.payment_intent_id.in_(ids),
                    StripeEvent.invoice_id.in_(ids),
                ),
            )
            .order_by(StripeEvent.created.desc())
            .limit(10)
        )
    )
    rows.sort(key=lambda e: PAYMENT_EVENT_TYPES.index(e.type))
    return rows[0] if rows else None


# -- cleanup ---------------------------------------------------------------------------------


def cleanup_query(processor_id: int | None, older_than: timedelta, include_errors: bool):
    statuses = CLEANABLE + ((EV_ERROR,) if include_errors else ())
    q = select(StripeEvent.id).where(
        StripeEvent.status.in_(statuses), StripeEvent.received_at < utcnow() - older_than
    )
    if processor_id is not None:
        q = q.where(StripeEvent.processor_id == processor_id)
    return q


def delete_events(ids: list[int]) -> int:
    if not ids:
        return 0
    immediate()
    n = rowcount(db.session.execute(delete(StripeEvent).where(StripeEvent.id.in_(ids))))
    db.session.commit()
    return n
