"""What a handler sees of the event it processes."""

from __future__ import annotations

import json

from admin.models import EV_IGNORED, EV_SUCCESS, PaymentProcessor, StripeEvent
from admin.services.core.stripe_reader import StripeReader
from admin.stripe_shapes import RESOURCE_OF


class EventContext:
    def __init__(self, row: StripeEvent, processor: PaymentProcessor, reader: StripeReader | None = None):
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
