"""StripePaymentIntent: every PaymentIntent paydesk created or heard of (CiviCRM's table), and how staff
browse them: the ``/intents`` filter, its pages, counts and money totals, and what one intent is about.

The same :class:`IntentFilter` serves ``/intents``, the bulk cancel job, ``intents list`` and
``intents cancel-incomplete``. What staff do to intents is in ``intent_ops``; the jobs in ``intent_jobs``.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from itertools import islice
from typing import Any, ClassVar

from sqlalchemy import Select, bindparam, func, or_, select

from admin.dbutil import contains_text, parse_id
from admin.extensions import db
from admin.listing import (
    Amount,
    Filter,
    Page,
    Summary,
    capped_counts,
    keyset_page,
    processor_field,
    summary,
    walk,
)
from admin.models import AuditLog, Contact, Contribution, PaymentProcessor, StripeEvent, StripePaymentIntent
from admin.money import MoneyTotal, money_totals  # noqa: F401  (intent_jobs still imports them from here)
from admin.services.records import contributions
from admin.services.records.contacts import linked_contact
from admin.stripe_shapes import currency_of, failure_message, minor_units, sid
from admin.timeutil import format_age, from_unix, parse_age, utcnow

STATUSES = (
    "requires_payment_method",
    "requires_confirmation",
    "requires_action",
    "processing",
    "requires_capture",
    "succeeded",
    "canceled",
)
# How far along an intent is; at the same Stripe second, state only moves forward.
RANK = {
    "requires_payment_method": 0,
    "requires_confirmation": 1,
    "requires_action": 2,
    "processing": 3,
    "requires_capture": 4,
    "succeeded": 5,
    "canceled": 5,
}
FINAL = ("succeeded", "canceled")
# Started, not finished: neither succeeded nor cancelled (what may still be cancelled in Stripe).
OPEN = (
    "requires_payment_method",
    "requires_confirmation",
    "requires_action",
    "processing",
    "requires_capture",
)
# Waiting for the donor (no card yet, not confirmed, or stopped at 3-D Secure): what CiviCRM's
# Job.process_stripe calls incomplete and cancels once old enough (``--cancel-incomplete``).
INCOMPLETE = ("requires_payment_method", "requires_confirmation", "requires_action")
# Status words the filter accepts besides Stripe's own: each stands for a group.
STATUS_GROUPS = {"incomplete": INCOMPLETE, "open": OPEN}
STATUS_CHOICES = STATUSES + tuple(STATUS_GROUPS)
CAPTURE_METHODS = ("automatic", "automatic_async", "manual")
GONE = "gone"  # ``flags`` of an intent Stripe answers 404 for
STAFF_SOURCE = "staff"  # ``referrer`` of an intent a staff charge made (services/payments/charges)


_BY_INTENT_ID = select(StripePaymentIntent).where(  # built once: every payment_intent.* event asks
    StripePaymentIntent.stripe_intent_id == bindparam("intent_id")
)


def by_intent_id(intent_id: str) -> StripePaymentIntent | None:
    return db.session.scalar(_BY_INTENT_ID, {"intent_id": intent_id})


def sync_intent(
    processor: PaymentProcessor,
    pi: dict,
    *,
    stamp: int,
    row: StripePaymentIntent | None = None,
    looked_up: bool = False,
    paid_for: Contribution | None = None,
    made: bool = False,
    flush: bool = True,
) -> StripePaymentIntent:
    """Bring the tracked intent in line with ``pi`` unless a later state is recorded already.

    ``row``: the tracked intent when the caller has looked it up already (``looked_up``: it did, and
    paydesk tracks none yet). ``stamp``: the Stripe time the state is from (an event's ``created``; now,
    for an object just fetched). ``paid_for``: the contribution the intent paid for, when the caller has
    just recorded it (then it is not looked up); ``made``: the caller made it just now from the intent's charge,
    without a contact given, so for the same customer its contact is the customer's (not looked up either). ``flush=False``: written with the caller's next flush (a
    handler's, when its event commits; a new row has no id until then).
    """
    if row is None and not looked_up:
        row = by_intent_id(pi["id"])
    new = row is None
    if row is None:
        # added once its contact and contribution are known: one INSERT, not an INSERT and two UPDATEs
        row = StripePaymentIntent(
            stripe_intent_id=pi["id"],
            processor_id=processor.id,
            created_date=from_unix(pi.get("created")) or utcnow(),
        )
    elif not _moves_forward(row, pi.get("status"), stamp):
        return row
    metadata = pi.get("metadata")
    if not isinstance(metadata, dict):
        metadata = {}
    row.status = pi.get("status")
    row.amount = minor_units(pi, "amount", default=None)
    row.currency = currency_of(pi) if pi.get("currency") is not None else None
    row.capture_method = pi.get("capture_method")
    row.customer_id = sid(pi.get("customer")) or row.customer_id
    # localstripe keeps no description on intents; paydesk's demo puts it in the metadata.
    row.description = pi.get("description") or row.description or metadata.get("description") or None
    row.referrer = row.referrer or (str(metadata["referrer"])[:255] if metadata.get("referrer") else None)
    if row.contact_id is None and made and paid_for is not None and paid_for.customer_id == row.customer_id:
        row.contact_id = (
            paid_for.contact_id
        )  # the customer's (linked or made now), else its billing contact's
    elif row.contact_id is None:
        contact = linked_contact(processor.id, row.customer_id)
        row.contact_id = contact.id if contact else None
    if row.contribution_id is None:
        contribution = paid_for if paid_for is not None else contributions.by_intent(processor.id, pi["id"])
        row.contribution_id = contribution.id if contribution else None
    _note_error(row, pi, stamp)
    if row.flags == GONE:
        row.flags = None  # Stripe has it after all
    row.stripe_updated = max(row.stripe_updated or 0, int(stamp or 0))
    if new:
        db.session.add(row)
    if flush:
        db.session.flush()
    return row


def _note_error(row: StripePaymentIntent, pi: dict, stamp: int) -> None:
    """Keep Stripe's last payment error; a new failure (another charge or message) is dated, so the
    card-testing alarm counts each failed attempt once however often the intent is re-read."""
    error = failure_message(pi)
    extra = json.loads(row.extra_data) if row.extra_data else {}
    if not error:
        row.last_error = None  # Stripe clears it once the intent moves on; when it failed stays known
        return
    err = pi.get("last_payment_error") or {}
    key = f"{sid(err.get('charge')) or sid(err.get('payment_method')) or ''}:{error}"
    if extra.get("last_error_key") != key:
        extra["last_error_key"] = key
        row.extra_data = json.dumps(extra)
        row.last_error_at = from_unix(stamp) if stamp else utcnow()
    row.last_error = error[:500]


def _moves_forward(row: StripePaymentIntent, status: str | None, stamp: int) -> bool:
    if row.status in FINAL and status != row.status:
        return False
    if stamp < (row.stripe_updated or 0):
        return False
    if stamp == (row.stripe_updated or 0):
        return RANK.get(status or "", 0) >= RANK.get(row.status or "", 0)
    return True


def link_contribution(row: StripePaymentIntent | str | None, contribution) -> None:
    """Note the contribution an intent paid for (``row``: the tracked intent, or its id)."""
    if isinstance(row, str):
        row = by_intent_id(row)
    if row is not None and contribution is not None:
        row.contribution_id = row.contribution_id or contribution.id
        row.contact_id = row.contact_id or contribution.contact_id


# -- the /intents filter ------------------------------------------------------------------


def age_of(text: str | None) -> timedelta | None:
    """An age in the seed's words ("30 minutes", "1 hour", "3 months"); None for empty or "0"."""
    if text is None or text.strip() in ("", "0"):
        return None
    return parse_age(text)


@dataclass
class IntentFilter(Filter):
    LABELS: ClassVar[dict[str, str]] = {
        "since": "Created from",
        "until": "Created to (inclusive)",
        "capture_method": "Capture",
        "error": "Last error",
    }

    ppid: int | None = processor_field()
    status: list[str] = field(default_factory=list, metadata={"choices": STATUS_CHOICES})
    since: datetime | None = None  # created on or after
    until: datetime | None = field(default=None, metadata={"end": True})
    older_than: str | None = None  # created more than this long ago ("1 hour")
    min_amount: Amount | None = None
    max_amount: Amount | None = None
    currency: str | None = None
    capture_method: str | None = field(default=None, metadata={"choices": CAPTURE_METHODS})
    contact: str | None = None  # a contact id, an email, or part of a name
    contribution: str | None = None  # a contribution id, "none" or "any"
    description: str | None = None  # words in the description
    referrer: str | None = None  # part of the page the donor came from
    error: str | None = None  # "any", or words in the last payment error
    failed_within: str | None = None  # the last payment error is this recent ("60 minutes")
    q: str | None = None  # a pi_ or cus_ id, or an email

    def check(self, errors: dict[str, str]) -> None:
        for name in ("older_than", "failed_within"):
            try:
                age_of(getattr(self, name))
            except ValueError as err:
                errors[name] = str(err)
                setattr(self, name, None)
        if self.since and self.until and self.since >= self.until:
            errors["until"] = "must be after the start date"
        if self.currency:
            self.currency = self.currency.strip().lower()
            if len(self.currency) != 3 or not self.currency.isalpha():
                errors["currency"] = f"{self.currency!r} is not a currency code such as usd"
                self.currency = None
        if self.contribution and not (parse_id(self.contribution) or self.contribution in ("none", "any")):
            errors["contribution"] = "give a contribution id, 'none' or 'any'"
            self.contribution = None
        for name in ("min_amount", "max_amount"):
            amount = getattr(self, name)
            if amount is not None and self.currency:
                try:
                    amount.minor(self.currency)
                except ValueError as err:
                    errors[name] = str(err)
                    setattr(self, name, None)

    @property
    def statuses(self) -> list[str]:
        """Stripe statuses the status choice stands for (groups expanded)."""
        out: list[str] = []
        for s in self.status:
            out.extend(x for x in STATUS_GROUPS.get(s, (s,)) if x not in out)
        return out


def _like(col, text: str):
    return contains_text(col, text)


def _amount_condition(amount: Amount, currency: str | None, at_least: bool):
    """Money typed in major units, compared in each currency's minor units."""
    currencies = (
        [currency]
        if currency
        else [c for c in db.session.scalars(select(StripePaymentIntent.currency).distinct()) if c]
    )
    conds = []
    for cur in currencies:
        try:
            minor = amount.minor(cur)
        except ValueError:
            continue  # "12.5" is no amount of yen: no yen intent matches
        cmp = StripePaymentIntent.amount >= minor if at_least else StripePaymentIntent.amount <= minor
        conds.append((StripePaymentIntent.currency == cur) & cmp)
    return or_(*conds) if conds else StripePaymentIntent.id.is_(None)


def _contact_condition(text: str):
    text = text.strip()
    if text.isascii() and text.isdigit():  # an id; one no contact can have matches nothing
        return StripePaymentIntent.contact_id == (parse_id(text) or -1)
    if text.startswith("cus_"):
        return StripePaymentIntent.customer_id == text
    if "@" in text:
        return StripePaymentIntent.contact_id.in_(
            select(Contact.id).where(func.lower(Contact.email) == text.lower())
        )
    return StripePaymentIntent.contact_id.in_(select(Contact.id).where(_like(Contact.display_name, text)))


def intents_query(flt: IntentFilter, *, with_status: bool = True, now: datetime | None = None) -> Select:
    """Tracked intents matching the filter (no order, no paging): the page, counts, bulk jobs and the CLI."""
    now = now or utcnow()
    q = select(StripePaymentIntent)
    if flt.ppid is not None:
        q = q.where(StripePaymentIntent.processor_id == flt.ppid)
    if with_status and flt.status:
        q = q.where(StripePaymentIntent.status.in_(flt.statuses))
    if flt.since:
        q = q.where(StripePaymentIntent.created_date >= flt.since)
    if flt.until:
        q = q.where(StripePaymentIntent.created_date < flt.until)
    older = age_of(flt.older_than)
    if older:
        q = q.where(StripePaymentIntent.created_date < now - older)
    if flt.currency:
        q = q.where(StripePaymentIntent.currency == flt.currency)
    if flt.min_amount is not None:
        q = q.where(_amount_condition(flt.min_amount, flt.currency, at_least=True))
    if flt.max_amount is not None:
        q = q.where(_amount_condition(flt.max_amount, flt.currency, at_least=False))
    if flt.capture_method:
        q = q.where(StripePaymentIntent.capture_method == flt.capture_method)
    if flt.contact:
        q = q.where(_contact_condition(flt.contact))
    if flt.contribution == "none":
        q = q.where(StripePaymentIntent.contribution_id.is_(None))
    elif flt.contribution == "any":
        q = q.where(StripePaymentIntent.contribution_id.is_not(None))
    elif flt.contribution:
        q = q.where(StripePaymentIntent.contribution_id == parse_id(flt.contribution))
    if flt.description:
        q = q.where(_like(StripePaymentIntent.description, flt.description))
    if flt.referrer:
        q = q.where(_like(StripePaymentIntent.referrer, flt.referrer))
    if flt.error == "any":
        q = q.where(StripePaymentIntent.last_error.is_not(None))
    elif flt.error:
        q = q.where(_like(StripePaymentIntent.last_error, flt.error))
    failed = age_of(flt.failed_within)
    if failed:
        q = q.where(StripePaymentIntent.last_error_at >= now - failed)
    if flt.q:
        text = flt.q.strip()
        if text.startswith("cus_"):
            q = q.where(StripePaymentIntent.customer_id == text)
        elif "@" in text:
            q = q.where(_contact_condition(text))
        else:
            q = q.where(
                or_(
                    StripePaymentIntent.stripe_intent_id == text, _like(StripePaymentIntent.description, text)
                )
            )
    return q


# Newest first, by when the intent was created in Stripe.
ORDER = (StripePaymentIntent.created_date, StripePaymentIntent.id)


def intent_page(flt: IntentFilter) -> Page:
    return keyset_page(intents_query(flt), ORDER, flt)


def intent_rows(flt: IntentFilter, limit: int | None = None) -> Iterator[dict[str, Any]]:
    """Every intent the filter matches, in page order, as plain dicts (``intents list``): read a keyset
    chunk at a time, so a large ``--limit`` never holds every row at once."""
    chunk = min(limit or 500, 500)
    rows = (
        r
        for rows in walk(intents_query(flt), ORDER, flt, scalars=True, chunk=chunk)
        for r in describe_rows(rows)
    )
    yield from (intent_dict(r) for r in islice(rows, limit))


def status_counts(flt: IntentFilter) -> dict[str, int]:
    """How many intents of each Stripe status match the filter (whatever its own status choice), each counted
    up to ``listing.COUNT_CAP`` ("10,000+")."""
    return capped_counts(
        intents_query(flt, with_status=False), StripePaymentIntent.status, StripePaymentIntent.id, STATUSES
    )


def intent_summary(flt: IntentFilter) -> Summary:
    """Count and money per currency of what the filter matches, as the page shows them: exact for a narrow
    filter, else computed at most once a minute (``listing.summary``)."""
    query = intents_query(flt)
    return summary("intents", flt, lambda: money_totals(query), query)


# -- what a row shows ------------------------------------------------------------------------


@dataclass
class IntentRow:
    intent: StripePaymentIntent
    contact: Contact | None
    contribution: Contribution | None
    processor_name: str
    age: timedelta


def describe_rows(rows: list[StripePaymentIntent], now: datetime | None = None) -> list[IntentRow]:
    """Contacts, contributions and processor names for a page of intents, one query each."""
    now = now or utcnow()
    contact_ids = {r.contact_id for r in rows if r.contact_id}
    contribution_ids = {r.contribution_id for r in rows if r.contribution_id}
    contacts: dict[int | None, Contact] = (
        {c.id: c for c in db.session.scalars(select(Contact).where(Contact.id.in_(contact_ids)))}
        if contact_ids
        else {}
    )
    contribs: dict[int | None, Contribution] = (
        {
            c.id: c
            for c in db.session.scalars(select(Contribution).where(Contribution.id.in_(contribution_ids)))
        }
        if contribution_ids
        else {}
    )
    names = dict(db.session.execute(select(PaymentProcessor.id, PaymentProcessor.name)).all())
    return [
        IntentRow(
            r,
            contacts.get(r.contact_id),
            contribs.get(r.contribution_id),
            names.get(r.processor_id, "?"),
            now - r.created_date,
        )
        for r in rows
    ]


def intent_dict(row: IntentRow) -> dict[str, Any]:
    """One intent for ``intents list --format json`` (and the table format's columns)."""
    from admin.money import format_money
    from admin.timeutil import format_age

    i = row.intent
    return {
        "id": i.id,
        "payment_intent_id": i.stripe_intent_id,
        "processor_id": i.processor_id,
        "created_date": i.created_date.isoformat(timespec="seconds") if i.created_date else None,
        "age": format_age(row.age),
        "status": i.status,
        "amount": i.amount,
        "currency": i.currency,
        "display_amount": format_money(i.amount, i.currency),
        "capture_method": i.capture_method,
        "customer_id": i.customer_id,
        "contact_id": i.contact_id,
        "contact": row.contact.display_name if row.contact else None,
        "contribution_id": i.contribution_id,
        "description": i.description,
        "referrer": i.referrer,
        "last_error": i.last_error,
        "gone_from_stripe": i.flags == GONE,
    }


# -- one intent -----------------------------------------------------------------------------

# What staff compare between paydesk's record and Stripe's object.
COMPARED = (
    ("status", "status"),
    ("amount", "amount"),
    ("currency", "currency"),
    ("capture_method", "capture_method"),
    ("customer_id", "customer"),
)


@dataclass
class IntentDetail:
    intent_id: str
    processor: PaymentProcessor
    local: StripePaymentIntent | None
    stripe: dict | None = None  # the intent as Stripe has it now
    stripe_error: str | None = None  # why it could not be shown
    stripe_gone: bool = False
    request_id: str | None = None
    differences: list[tuple[str, Any, Any]] = field(default_factory=list)
    row: IntentRow | None = None
    events: list[StripeEvent] = field(default_factory=list)
    audit: list[AuditLog] = field(default_factory=list)


def detail(intent_id: str, processor: PaymentProcessor, *, fetch: bool = True) -> IntentDetail:
    """Paydesk's record of an intent, Stripe's current object (fetched now; read only), where they
    differ, the events about it and its audit entries."""
    from admin.services.core import audit
    from admin.stripe_gateway import Gateway, GatewayError

    local = by_intent_id(intent_id)
    d = IntentDetail(intent_id, processor, local)
    if fetch:
        try:
            res = Gateway.for_processor(processor).retrieve("payment_intents", intent_id)
            d.stripe, d.request_id = dict(res), res.request_id
        except GatewayError as err:
            d.request_id = err.request_id
            if err.not_found:
                d.stripe_gone = True
                d.stripe_error = f"Stripe has no payment intent {intent_id} on {processor.name} (404)."
            else:
                d.stripe_error = (
                    f"Could not ask Stripe for this intent just now: {err.message}. "
                    f"Showing paydesk's record only; try again in a moment."
                )
    if local is not None:
        d.row = describe_rows([local])[0]
        if d.stripe:
            for name, key in COMPARED:
                theirs = sid(d.stripe.get(key)) if key == "customer" else d.stripe.get(key)
                if name == "currency" and isinstance(theirs, str):
                    theirs = theirs.lower()
                if theirs != getattr(local, name):
                    d.differences.append((name, getattr(local, name), theirs))
    d.events = list(
        db.session.scalars(
            select(StripeEvent)
            .where(or_(StripeEvent.payment_intent_id == intent_id, StripeEvent.object_id == intent_id))
            .order_by(StripeEvent.created.desc(), StripeEvent.id.desc())
            .limit(50)
        )
    )
    d.audit = audit.for_object("intent", intent_id)
    return d


# Stripe releases an authorisation nobody captured 7 days after the intent was created (the card networks'
# limit for most cards); /intents and the contribution page say when.
AUTHORISATION_DAYS = 7


def release_at(created: datetime | None) -> datetime | None:
    """When Stripe releases an uncaptured authorisation made at ``created``."""
    return created + timedelta(days=AUTHORISATION_DAYS) if created else None


def release_date(created: datetime | None) -> str:
    """ "on 2026-12-14 18:05 UTC (in 6 d 23 h)", or "now" once it is past."""
    when = release_at(created)
    if when is None:
        return ""
    left = when - utcnow()
    if left.total_seconds() <= 0:
        return f"on {when:%Y-%m-%d %H:%M} UTC (past: released)"
    return f"on {when:%Y-%m-%d %H:%M} UTC (in {format_age(left)})"
