"""Stripe events as staff browse them: the ``/events`` filter, its pages and counts, the
events as Stripe has them (the ``stripe`` source), a subscription's expected charges,
and what one event is about (its records, attempts and side effects).

The same :class:`EventFilter` serves ``/events``, bulk jobs and ``events list``.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, ClassVar

from sqlalchemy import Select, and_, exists, func, or_, select

from admin import listing
from admin.dbutil import LIKE_ESCAPE, like_escaped, parse_id
from admin.errors import ServiceError
from admin.extensions import db
from admin.listing import Filter, Page, keyset_page, processor_field, walk
from admin.models import (
    EVENT_STATUSES,
    Contact,
    Contribution,
    ContributionRecur,
    OutboxTask,
    Payment,
    PaymentProcessor,
    StripeCustomer,
    StripeEvent,
    StripePaymentIntent,
)
from admin.models.jobs import EventAttempt
from admin.services.core import stripe_reader
from admin.services.core.stripe_reader import StripeReader, stripe_failures
from admin.services.records.common import DONE
from admin.stripe_gateway import Gateway
from admin.stripe_shapes import sid
from admin.timeutil import from_unix, to_unix

SOURCES = ("local", "stripe")
STRIPE_EVENTS_DAYS = 30
# Ids staff paste into the search box, by prefix: the event columns that hold them.
ID_COLUMNS = {
    "evt_": ("event_id",),
    "cus_": ("customer_id",),
    "sub_": ("subscription_id",),
    "in_": ("invoice_id", "object_id"),
    "ch_": ("charge_id", "object_id"),
    "py_": ("charge_id", "object_id"),
    "pi_": ("payment_intent_id", "object_id"),
}
SEARCH_COLUMNS = (
    "event_id",
    "object_id",
    "customer_id",
    "subscription_id",
    "invoice_id",
    "charge_id",
    "payment_intent_id",
)


@dataclass
class EventFilter(Filter):
    LABELS: ClassVar[dict[str, str]] = {"since": "Created from", "until": "Created to (inclusive)"}

    ppid: int | None = processor_field()
    type: list[str] = field(default_factory=list)
    status: list[str] = field(default_factory=list, metadata={"choices": EVENT_STATUSES})
    since: datetime | None = None
    until: datetime | None = field(default=None, metadata={"end": True})
    q: str | None = None
    source: str = field(default="local", metadata={"choices": SOURCES})
    subscription: str | None = field(default=None, metadata={"stripe_id": "subscription"})
    filter_processed: bool = False

    def check(self, errors: dict[str, str]) -> None:
        self.type = [t for t in self.type if t != "all"]
        if self.since and self.until and self.since >= self.until:
            errors["until"] = "must be after the start date"
        if self.source == "stripe" and self.status:
            errors["status"] = "Stripe's events have no paydesk status: filter by status on the local source"
            self.status = []


# -- local ------------------------------------------------------------------------------------


def _type_condition(types: list[str]):
    exact = [t for t in types if not t.endswith("*")]
    prefixes = [t[:-1] for t in types if t.endswith("*")]
    conds = []
    if exact:
        conds.append(StripeEvent.type.in_(exact))
    for p in prefixes:
        conds.append(StripeEvent.type.like(like_escaped(p) + "%", escape=LIKE_ESCAPE))
    return or_(*conds)


def _search_condition(text: str):
    text = text.strip()
    if "@" in text:  # a contact's email: the events of that contact's Stripe customers
        customers = (
            select(StripeCustomer.customer_id)
            .join(Contact, Contact.id == StripeCustomer.contact_id)
            .where(func.lower(Contact.email) == text.lower())
        )
        return StripeEvent.customer_id.in_(customers)
    for prefix, cols in ID_COLUMNS.items():
        if text.startswith(prefix):
            return or_(*[getattr(StripeEvent, c) == text for c in cols])
    return or_(*[getattr(StripeEvent, c) == text for c in SEARCH_COLUMNS])


def processed_condition():
    """The event's contribution is already complete (CiviCRM's ``filter_processed``)."""
    c = Contribution
    return exists().where(
        c.processor_id == StripeEvent.processor_id,
        c.status.in_(DONE),
        or_(
            and_(StripeEvent.invoice_id.is_not(None), c.invoice_id == StripeEvent.invoice_id),
            and_(StripeEvent.charge_id.is_not(None), c.trxn_id == StripeEvent.charge_id),
            and_(
                StripeEvent.payment_intent_id.is_not(None),
                c.payment_intent_id == StripeEvent.payment_intent_id,
            ),
        ),
    )


def local_query(flt: EventFilter, *, with_status: bool = True) -> Select:
    """Stored events matching ``flt`` (no order, no paging)."""
    q = select(StripeEvent)
    if flt.ppid is not None:
        q = q.where(StripeEvent.processor_id == flt.ppid)
    if flt.type:
        q = q.where(_type_condition(flt.type))
    if with_status and flt.status:
        q = q.where(StripeEvent.status.in_(flt.status))
    if flt.since:
        q = q.where(StripeEvent.created >= to_unix(flt.since))
    if flt.until:
        q = q.where(StripeEvent.created < to_unix(flt.until))
    if flt.q:
        q = q.where(_search_condition(flt.q))
    if flt.subscription:
        q = q.where(StripeEvent.subscription_id == flt.subscription)
    if flt.filter_processed:
        q = q.where(~processed_condition())
    return q


# Newest first, as Stripe lists them: by Stripe's created time, then by arrival.
ORDER = (StripeEvent.created, StripeEvent.id)


def local_page(flt: EventFilter) -> Page:
    return keyset_page(local_query(flt), ORDER, flt)


def cursor_after(row: StripeEvent) -> str:
    """The ``after`` cursor that pages on from ``row`` (the CLI's ``--starting-after``)."""
    from admin.listing import encode_cursor

    return encode_cursor([row.created, row.id])


# Status counts are exact up to this many per status (listing.COUNT_CAP); above it a count says "more than
# COUNT_CAP". Counting a million events by status takes 80-140 ms on each database (bench/events_page.py).
COUNT_CAP = listing.COUNT_CAP


def status_counts(flt: EventFilter, *, exact: bool = False) -> dict[str, int]:
    """How many events of each status match the filter (whatever its own status choice). Unless
    ``exact``, a status with more than ``COUNT_CAP`` events counts ``COUNT_CAP + 1`` ("10,000+")."""
    base = local_query(flt, with_status=False)
    if not exact:
        return listing.capped_counts(base, StripeEvent.status, StripeEvent.id, EVENT_STATUSES, cap=COUNT_CAP)
    grouped = base.with_only_columns(StripeEvent.status, func.count()).group_by(StripeEvent.status)
    counts = dict.fromkeys(EVENT_STATUSES, 0)
    counts.update({status: int(n) for status, n in db.session.execute(grouped).all()})
    return counts


def count_label(n: int) -> str:
    """A count as staff read it: "1,234", or "10,000+" above the cap."""
    return listing.count_label(n, COUNT_CAP)


def event_rows(flt: EventFilter) -> Iterator[dict[str, Any]]:
    """Every stored event the filter matches, in page order, as dicts (the CSV of ``/events``), a keyset chunk
    at a time; the raw body is left out."""
    from admin.services.records.common import event_dict

    for chunk in walk(local_query(flt), ORDER, flt, scalars=True):
        yield from (event_dict(e) for e in chunk)


def find_event(row_id: int | str) -> StripeEvent:
    found = parse_id(row_id)
    row = db.session.get(StripeEvent, found) if found else None
    if row is None:
        raise ServiceError(f"no stored event with id {str(row_id)[:40]}")
    return row


def find_by_event_id(event_id: str, processor_id: int | None = None) -> StripeEvent | None:
    q = select(StripeEvent).where(StripeEvent.event_id == event_id)
    if processor_id is not None:
        q = q.where(StripeEvent.processor_id == processor_id)
    return db.session.scalars(q.order_by(StripeEvent.id).limit(2)).first()


# -- what a row shows -------------------------------------------------------------------------

AMOUNT_FIELDS = ("amount_paid", "amount_captured", "amount", "amount_total", "amount_due")


def payload_of(raw: str) -> dict:
    try:
        event = json.loads(raw)
        obj = (event.get("data") or {}).get("object") if isinstance(event, dict) else None
        return obj if isinstance(obj, dict) else {}
    except ValueError:
        return {}


def amount_of(obj: dict) -> tuple[int, str] | None:
    """The money an event's object is about, if any (integers only: a malformed amount shows nothing)."""
    currency = obj.get("currency")
    if not isinstance(currency, str):
        return None
    for name in AMOUNT_FIELDS:
        value = obj.get(name)
        if isinstance(value, int) and not isinstance(value, bool) and (value or name == AMOUNT_FIELDS[-1]):
            return value, currency.lower()
    plan = obj.get("plan")
    if isinstance(plan, dict) and isinstance(plan.get("amount"), int):
        return plan["amount"], currency.lower()
    return None


DASHBOARD_PATHS = {
    "evt_": "events",
    "cus_": "customers",
    "sub_": "subscriptions",
    "in_": "invoices",
    "ch_": "payments",
    "py_": "payments",
    "pi_": "payments",
    "re_": "refunds",
    "cs_": "checkout/sessions",
}


def dashboard_url(obj_id: str | None, livemode: bool) -> str | None:
    """The object in Stripe's dashboard, in the processor's mode."""
    if not obj_id:
        return None
    for prefix, path in DASHBOARD_PATHS.items():
        if obj_id.startswith(prefix):
            return f"https://dashboard.stripe.com/{'' if livemode else 'test/'}{path}/{obj_id}"
    return None


@dataclass
class ObjectRef:
    """A Stripe id on an event, with the local record it maps to (if any) and its dashboard link."""

    kind: str  # customer, subscription, invoice, charge, payment_intent
    stripe_id: str
    dashboard: str | None
    local_type: str | None = None  # contact, recurring, contribution, payment, intent
    local_id: int | None = None


@dataclass
class EventRow:
    event: StripeEvent
    amount: tuple[int, str] | None
    refs: list[ObjectRef]
    processor_name: str


REF_KINDS = (
    ("customer_id", "customer"),
    ("subscription_id", "subscription"),
    ("invoice_id", "invoice"),
    ("charge_id", "charge"),
    ("payment_intent_id", "payment_intent"),
)


# Keyed by (kind, Stripe id): the id columns are nullable, though an id matched by IN never is None.
LocalRecords = dict[tuple[str, str | None], tuple[str, int]]


def _local_records(events: list[StripeEvent]) -> LocalRecords:
    """Local records for every Stripe id on a page of events, in one query per kind."""
    ids: dict[str, set[str]] = {k: set() for _, k in REF_KINDS}
    for e in events:
        for col, k in REF_KINDS:
            if getattr(e, col):
                ids[k].add(getattr(e, col))
    found: LocalRecords = {}
    # contributions are unique per (processor, invoice): naming the page's processors lets the lookup read that
    # index instead of every contribution (PostgreSQL, and SQLite without statistics, scan the table otherwise)
    processors = sorted({e.processor_id for e in events})
    if ids["customer"]:
        for cus, contact in db.session.execute(
            select(StripeCustomer.customer_id, StripeCustomer.contact_id).where(
                StripeCustomer.customer_id.in_(ids["customer"])
            )
        ):
            found[("customer", cus)] = ("contact", contact)
    if ids["subscription"]:
        for sub, rid in db.session.execute(
            select(ContributionRecur.subscription_id, ContributionRecur.id).where(
                ContributionRecur.subscription_id.in_(ids["subscription"])
            )
        ):
            found[("subscription", sub)] = ("recurring", rid)
    if ids["invoice"]:
        for inv, cid in db.session.execute(
            select(Contribution.invoice_id, Contribution.id).where(
                Contribution.processor_id.in_(processors), Contribution.invoice_id.in_(ids["invoice"])
            )
        ):
            found[("invoice", inv)] = ("contribution", cid)
    if ids["charge"]:
        for ch, cid in db.session.execute(
            select(Payment.charge_id, Payment.contribution_id).where(
                Payment.charge_id.in_(ids["charge"]), Payment.refund_id.is_(None)
            )
        ):
            found[("charge", ch)] = ("contribution", cid)
    if ids["payment_intent"]:
        for pi, iid in db.session.execute(
            select(StripePaymentIntent.stripe_intent_id, StripePaymentIntent.id).where(
                StripePaymentIntent.stripe_intent_id.in_(ids["payment_intent"])
            )
        ):
            found[("payment_intent", pi)] = ("intent", iid)
        for cpi, cid in db.session.execute(
            select(Contribution.payment_intent_id, Contribution.id).where(
                Contribution.payment_intent_id.in_(ids["payment_intent"])
            )
        ):
            found.setdefault(("payment_intent", cpi), ("contribution", cid))
    return found


def describe_rows(events: list[StripeEvent]) -> list[EventRow]:
    """What the events table shows for each event: amount, object ids with their local records."""
    found = _local_records(events)
    procs = {
        pid: (name, mode)
        for pid, name, mode in db.session.execute(
            select(PaymentProcessor.id, PaymentProcessor.name, PaymentProcessor.mode)
        )
    }
    names = {pid: name for pid, (name, _) in procs.items()}
    modes = {pid: mode for pid, (_, mode) in procs.items()}
    rows = []
    for e in events:
        refs = []
        for col, k in REF_KINDS:
            value = getattr(e, col)
            if value:
                local = found.get((k, value))
                refs.append(
                    ObjectRef(
                        k,
                        value,
                        dashboard_url(value, modes.get(e.processor_id) == "live"),
                        *(local or (None, None)),
                    )
                )
        rows.append(EventRow(e, amount_of(payload_of(e.raw)), refs, names.get(e.processor_id, "?")))
    return rows


# -- one event --------------------------------------------------------------------------------


@dataclass
class EventDetail:
    event: StripeEvent
    row: EventRow
    pretty: str
    contributions: list[Contribution]
    payments: list[Payment]
    recurring: list[ContributionRecur]
    contacts: list[Contact]
    intents: list[StripePaymentIntent]
    attempts: list[EventAttempt]
    tasks: list[OutboxTask]


def detail(row_id: int) -> EventDetail:
    e = find_event(row_id)
    try:
        pretty = json.dumps(json.loads(e.raw), indent=2, sort_keys=False)
    except ValueError:
        pretty = e.raw
    p = e.processor_id
    contributions: list[Contribution] = []
    conds = []
    if e.invoice_id:
        conds.append(Contribution.invoice_id == e.invoice_id)
    if e.charge_id:
        conds.append(Contribution.trxn_id == e.charge_id)
        conds.append(
            Contribution.id.in_(select(Payment.contribution_id).where(Payment.charge_id == e.charge_id))
        )
    if e.payment_intent_id:
        conds.append(Contribution.payment_intent_id == e.payment_intent_id)
    if conds:
        contributions = list(
            db.session.scalars(
                select(Contribution)
                .where(Contribution.processor_id == p, or_(*conds))
                .order_by(Contribution.id)
            )
        )
    payments = [pay for c in contributions for pay in c.payments]
    recurring = (
        list(
            db.session.scalars(
                select(ContributionRecur).where(
                    ContributionRecur.processor_id == p,
                    ContributionRecur.subscription_id == e.subscription_id,
                )
            )
        )
        if e.subscription_id
        else []
    )
    contacts = (
        list(
            db.session.scalars(
                select(Contact)
                .join(StripeCustomer)
                .where(StripeCustomer.processor_id == p, StripeCustomer.customer_id == e.customer_id)
            )
        )
        if e.customer_id
        else []
    )
    intents = (
        list(
            db.session.scalars(
                select(StripePaymentIntent).where(StripePaymentIntent.stripe_intent_id == e.payment_intent_id)
            )
        )
        if e.payment_intent_id
        else []
    )
    attempts = list(
        db.session.scalars(
            select(EventAttempt).where(EventAttempt.event_row_id == e.id).order_by(EventAttempt.id.desc())
        )
    )
    tasks = list(
        db.session.scalars(select(OutboxTask).where(OutboxTask.event_row_id == e.id).order_by(OutboxTask.id))
    )
    return EventDetail(
        e,
        describe_rows([e])[0],
        pretty,
        contributions,
        payments,
        recurring,
        contacts,
        intents,
        attempts,
        tasks,
    )


# -- Stripe's side ----------------------------------------------------------------------------


@dataclass
class StripeEventRow:
    """An event as Stripe lists it, with paydesk's status for it ("not in paydesk" when none)."""

    event_id: str
    type: str
    created: datetime | None
    object_id: str | None
    amount: tuple[int, str] | None
    local: StripeEvent | None
    raw: dict

    @property
    def status(self) -> str:
        return self.local.status if self.local else "not in paydesk"


def stripe_type_params(flt: EventFilter) -> dict[str, Any]:
    """The filter's event types as Stripe's event list takes them."""
    if len(flt.type) == 1:
        return {"type": flt.type[0]}
    return {"types": flt.type[:20]} if flt.type else {}


def stripe_filter_params(flt: EventFilter) -> dict[str, Any]:
    """What of the filter Stripe's event list applies itself: the types and the period."""
    params = stripe_type_params(flt)
    created = {}
    if flt.since:
        created["gte"] = to_unix(flt.since)
    if flt.until:
        created["lt"] = to_unix(flt.until)
    if created:
        params["created"] = created
    return params


def stripe_page(
    processor: PaymentProcessor,
    flt: EventFilter,
    *,
    starting_after: str | None = None,
    limit: int | None = None,
) -> tuple[list[StripeEventRow], str | None]:
    """One page of Stripe's own event list (last 30 days; ``core.stripe_reader.stripe_page``), each marked
    with paydesk's status. Returns (rows, the id to page on after, or None on the last page). Free text and
    "hide processed" are applied to the page, so a page may show fewer rows (even none) and still
    have more after it: the cursor is the last event Stripe listed, shown or not."""
    page = stripe_reader.stripe_page(
        Gateway.for_processor(processor),
        "events",
        flt,
        what="event list",
        starting_after=starting_after,
        size=limit,
        **stripe_type_params(flt),
    )
    events = page.rows
    ids = [e["id"] for e in events]
    local = {
        e.event_id: e
        for e in db.session.scalars(
            select(StripeEvent).where(StripeEvent.processor_id == processor.id, StripeEvent.event_id.in_(ids))
        )
    }
    rows = []
    for e in events:
        obj = (e.get("data") or {}).get("object") or {}
        row = StripeEventRow(
            e["id"],
            e.get("type") or "",
            from_unix(e.get("created")),
            obj.get("id"),
            amount_of(obj),
            local.get(e["id"]),
            e,
        )
        if flt.q and flt.q not in (
            row.event_id,
            row.object_id,
            sid(obj.get("customer")),
            sid(obj.get("subscription")),
            sid(obj.get("invoice")),
            sid(obj.get("charge")),
            sid(obj.get("payment_intent")),
        ):
            continue
        rows.append(row)
    if flt.filter_processed:
        done = {r.event_id for r in rows if r.local is not None and _is_processed(r.local)}
        rows = [r for r in rows if r.event_id not in done]
    return rows, (ids[-1] if page.next_after else None)


def _is_processed(e: StripeEvent) -> bool:
    return bool(db.session.scalar(select(processed_condition()).where(StripeEvent.id == e.id)))


# -- a subscription's expected charges -------------------------------------------------------


@stripe_failures
def expected_charges(processor: PaymentProcessor, subscription_id: str) -> list:
    """The charges a subscription's invoices say there should be, each found or missing locally
    (CiviCRM's Listevents with ``subscription``): the subscriptions page's invoice rows, whose
    ``found`` says whether paydesk has the completed contribution and the payment."""
    from admin.services.records.subscriptions import invoice_rows, subscription_invoices

    reader = StripeReader(processor)
    return invoice_rows(reader, processor, subscription_invoices(reader, subscription_id))
