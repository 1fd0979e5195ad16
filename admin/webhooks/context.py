"""What a handler sees of the event it processes."""

from __future__ import annotations

import json

from admin.models import EV_IGNORED, EV_SUCCESS, PaymentProcessor
from admin.services.core.stripe_reader import StripeReader
from admin.stripe_shapes import RESOURCE_OF


class EventRow:
    """The stored event as processing reads it: these columns of ``stripe_event`` (one statement, no ORM
    object), then the outcome being written (``status``, ``status_reason``, ``last_error``). What a handler
    sees as ``ctx.row`` and a replay's ``on_done`` gets."""

    __slots__ = (
        "id",
        "event_id",
        "type",
        "processor_id",
        "status",
        "status_reason",
        "locked_by",
        "attempts",
        "last_error",
        "raw",
        "refetch",
        "created",
        "no_receipt",
    )

    def __init__(
        self,
        id: int,
        event_id: str,
        type: str,
        processor_id: int,
        status: str,
        status_reason: str | None,
        locked_by: str | None,
        attempts: int,
        last_error: str | None,
        raw: str,
        refetch: bool,
        created: int,
        no_receipt: bool,
    ) -> None:
        self.id, self.event_id, self.type, self.processor_id = id, event_id, type, processor_id
        self.status, self.status_reason, self.locked_by = status, status_reason, locked_by
        self.attempts, self.last_error = attempts, last_error
        self.raw, self.refetch, self.created, self.no_receipt = raw, refetch, created, no_receipt


class EventContext:
    def __init__(self, row: EventRow, processor: PaymentProcessor, reader: StripeReader | None = None):
        self.row = row
        self.processor = processor
        self.event: dict = json.loads(row.raw)
        self.payload: dict = (self.event.get("data") or {}).get("object") or {}
        # Replayed and pulled events may be old: never trust objects expanded inside them.
        self.reader = reader or StripeReader(processor, fresh=row.refetch)
        self.outcome = EV_SUCCESS
        self.notes: list[str] = []

    @property
    def created(self) -> int:
        return int(self.row.created or 0)

    @property
    def no_receipt(self) -> bool:
        return bool(self.row.no_receipt)

    def object(self, *, stale: bool = False) -> dict:
        """The event's object: the payload, or fetched again from Stripe when the payload may be stale
        (a replayed or pulled event, or ``stale=True`` because a newer state was applied already)."""
        if not (self.row.refetch or stale):
            return self.payload
        return self.fresh_object()

    def fresh_object(self) -> dict:
        resource = RESOURCE_OF.get(self.payload.get("object") or "")
        if resource is None:
            return self.payload
        return self.reader.get(resource, self.payload["id"])

    def ignore(self, reason: str) -> None:
        self.outcome = EV_IGNORED
        self.notes.append(reason)

    def note(self, text: str) -> None:
        self.notes.append(text)
