"""Reconciliation: one processor's Stripe account and paydesk's records over a period, row by row.

Three comparisons, each keyed by the Stripe id paydesk stores as ``trxn_id``:

* Stripe's **charges** with paydesk's payments (``payment.trxn_id`` = charge id);
* Stripe's **refunds** with paydesk's negative payments (``payment.trxn_id`` = refund id);
* Stripe's **paid invoices** with paydesk's contributions (``contribution.invoice_id``).

A row is *in step*, or has one problem: ``missing`` (Stripe has it paid, paydesk has no
record), ``amount`` (both have it, the amounts differ), ``status`` (both have it, one counts
it as paid and the other does not) or ``absent`` (paydesk has it as paid, Stripe has no such
object). What paydesk has that Stripe's list for the period does not show is asked of
Stripe one by one, so an object that Stripe dates differently is compared, not reported.

Fixing a row (:func:`fix`) always looks at the row afresh first (Stripe fetched again), so a
fix is idempotent and "fix all" never repeats work another fix did:

* Stripe has it right, paydesk not: replay the object's stored event (``event_ops.replay``,
  which fetches the event and its objects from Stripe), and where there is none, or the
  replay left a difference, import it (``imports.import_charge``; an invoice is settled with
  ``contributions.settle_invoice`` and its amount corrected). Receipts are never sent by a
  fix: the donor was charged long ago.
* paydesk counts as paid what Stripe does not have (or has as unpaid): the local record is
  marked Cancelled with a note (a payment no longer counts; a contribution left with no
  counted payment becomes Cancelled). This changes what the books say, so it is never done
  without ``cancel_local=True``: the page asks for confirmation, ``reconcile --fix`` and the
  "fix all" job need ``--cancel-local`` / the box ticked.

Every fix writes one audit entry in the transaction that makes it (``event.replay``,
``import.charge``, ``reconcile.settle_invoice`` or ``reconcile.cancel_local``).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta
from itertools import chain
from typing import Any, ClassVar

from flask import current_app
from sqlalchemy import delete, select

from admin.dbutil import immediate
from admin.errors import ServiceError, stripe_refusal
from admin.extensions import db
from admin.listing import Filter, Page, sequence_page
from admin.models import (
    CANCELLED,
    COMPLETED,
    Contribution,
    Payment,
    PaymentProcessor,
    ReconcileScan,
    StripeEvent,
)
from admin.models.jobs import JOB_ACTIVE, Job
from admin.services.core import audit
from admin.services.core.jobs import JobContext, job_kind
from admin.services.core.stripe_reader import StripeReader, write_after_reading
from admin.services.records.contributions import (
    DONE,
    PAYMENT_REFUNDED,
    PAYMENT_VOID,
    REFUND_COUNTED,
    recompute,
)
from admin.stripe_gateway import GatewayError
from admin.stripe_shapes import sid
from admin.timeutil import from_unix, to_unix, utcnow

OBJECTS = ("charge", "refund", "invoice")
PROBLEMS = ("missing", "amount", "status", "absent")
PROBLEM_LABELS = {"missing": "missing in paydesk", "amount": "amount differs", "status": "status differs",
                  "absent": "not in Stripe"}
ID_PREFIXES = {"charge": ("ch_", "py_"), "refund": ("re_", "pyr_"), "invoice": ("in_",)}
RESOURCES = {"charge": "charges", "refund": "refunds", "invoice": "invoices"}
DEFAULT_DAYS = 7
MAX_DAYS = 366
MAX_OBJECTS = 5000  # per kind and scan: a longer period is refused with a message, not half-shown
INVOICE_EVENTS = ("invoice.paid", "invoice.payment_succeeded")
REFUND_EVENTS = ("charge.refunded", "refund.created", "refund.updated", "charge.refund.updated", "refund.failed")


@dataclass
class ReconcileFilter(Filter):
    """``/reconcile?ppid=1&days=7&object=charge&problem=missing``, also ``reconcile --ppid 1 --days 7``.
    The period is ``since``..``until`` (whole days, ``until`` inclusive), or the last ``days`` days."""

    LABELS: ClassVar[dict[str, str]] = {"days": "Last days", "object": "Objects", "problem": "Differences"}

    ppid: int | None = None
    days: int = DEFAULT_DAYS
    since: datetime | None = None
    until: datetime | None = field(default=None, metadata={"end": True})
    object: list[str] = field(default_factory=list, metadata={"choices": OBJECTS})
    problem: list[str] = field(default_factory=list, metadata={"choices": PROBLEMS})
    matching: bool = False  # show the rows that are in step too

    def check(self, errors: dict[str, str]) -> None:
        if not 1 <= self.days <= MAX_DAYS:
            errors["days"] = f"must be from 1 to {MAX_DAYS}"
            self.days = DEFAULT_DAYS
        if self.since and self.until and self.since >= self.until:
            errors["until"] = "must be after the start date"
            self.until = None
        since, until = self.window()
        if until - since > timedelta(days=MAX_DAYS):
            errors["since"] = f"a period of at most {MAX_DAYS} days, please"
            self.since = None

    def window(self, now: datetime | None = None) -> tuple[datetime, datetime]:
        until = self.until or (now or utcnow()).replace(microsecond=0) + timedelta(seconds=1)  # up to now
        return self.since or until - timedelta(days=self.days), until


# -- rows --------------------------------------------------------------------------------------

@dataclass
class Row:
    """One Stripe object next to paydesk's record of it."""

    object: str  # charge | refund | invoice
    stripe_id: str
    created: datetime | None
    currency: str | None
    stripe_amount: int | None = None  # None: Stripe has no such object
    stripe_status: str | None = None
    local_amount: int | None = None
    local_status: str | None = None
    payment_id: int | None = None
    contribution_id: int | None = None
    charge_id: str | None = None  # the charge a refund belongs to
    intent_id: str | None = None  # a charge's PaymentIntent
    customer_id: str | None = None
    problem: str | None = None
    detail: str = ""
    remedy: str | None = None  # fetch (from Stripe) | cancel (the local record)

    @property
    def key(self) -> str:
        return f"{self.object}:{self.stripe_id}"

    @property
    def label(self) -> str:
        return PROBLEM_LABELS.get(self.problem or "", "in step")

    @property
    def in_stripe(self) -> bool:
        return self.stripe_amount is not None

    @property
    def money(self) -> tuple[int, str] | None:
        """The amount that moves when this row is fixed (Stripe's, or the local one to cancel)."""
        amount = self.local_amount if self.remedy == "cancel" else self.stripe_amount
        return (abs(amount), self.currency or "") if amount is not None else None

    def as_dict(self) -> dict[str, Any]:
        return {"object": self.object, "id": self.stripe_id,
                "created": self.created.isoformat(timespec="seconds") if self.created else None,
                "currency": self.currency, "stripe_amount": self.stripe_amount, "stripe_status": self.stripe_status,
                "local_amount": self.local_amount, "local_status": self.local_status,
                "payment_id": self.payment_id, "contribution_id": self.contribution_id,
                "problem": self.problem or "in step", "detail": self.detail, "fix": self.remedy}


def _money(amount: int | None, currency: str | None) -> str:
    from admin.money import format_money

    return format_money(amount, currency) if amount is not None else "nothing"


def _charge_row(ch: dict | None, pay: Payment | None, charge_id: str) -> Row | None:
    """A Stripe charge (None: Stripe has none) next to its payment."""
    row = Row("charge", charge_id, from_unix(ch.get("created")) if ch else pay.payment_date if pay else None,
              ((ch or {}).get("currency") or (pay.currency if pay else "")).lower())
    if pay is not None:
        row.local_amount, row.local_status = pay.amount, pay.status
        row.payment_id, row.contribution_id = pay.id, pay.contribution_id
    local_paid = pay is not None and pay.status == COMPLETED
    if ch is None:
        if not local_paid:
            return None
        row.stripe_status = "not in Stripe"
        row.problem, row.remedy = "absent", "cancel"
        row.detail = f"paydesk has a completed payment of {_money(pay.amount, pay.currency)}; Stripe has no charge {charge_id}"
        return row
    row.customer_id, row.intent_id = sid(ch.get("customer")), sid(ch.get("payment_intent"))
    row.stripe_status = ch.get("status") or "?"
    if ch.get("captured") is False and row.stripe_status == "succeeded":
        row.stripe_status = "uncaptured"
    paid = row.stripe_status == "succeeded"
    row.stripe_amount = int(ch.get("amount_captured") or ch.get("amount") or 0) if paid else int(ch.get("amount") or 0)
    if not paid:
        if not local_paid:
            return None  # a failed or uncaptured charge is no payment on either side
        row.problem, row.remedy = "status", "cancel"
        row.detail = f"Stripe has the charge as {row.stripe_status}; paydesk as a completed payment"
    elif pay is None:
        row.problem, row.remedy = "missing", "fetch"
        row.detail = f"Stripe has {_money(row.stripe_amount, row.currency)} paid; paydesk has no payment"
    elif pay.status != COMPLETED or (pay.contribution is not None and pay.contribution.status not in DONE):
        row.problem, row.remedy = "status", "fetch"
        c_status = pay.contribution.status if pay.contribution is not None else "?"
        row.detail = f"Stripe has it paid; paydesk has the payment {pay.status}, its contribution {c_status}"
    elif pay.amount != row.stripe_amount:
        row.problem, row.remedy = "amount", "fetch"
        row.detail = f"Stripe {_money(row.stripe_amount, row.currency)}, paydesk {_money(pay.amount, pay.currency)}"
    return row


def _refund_row(r: dict | None, pay: Payment | None, refund_id: str) -> Row | None:
    """A Stripe refund (None: Stripe has none) next to its negative payment."""
    row = Row("refund", refund_id, from_unix(r.get("created")) if r else pay.payment_date if pay else None,
              ((r or {}).get("currency") or (pay.currency if pay else "")).lower())
    if pay is not None:
        row.local_amount, row.local_status = pay.amount, pay.status
        row.payment_id, row.contribution_id, row.charge_id = pay.id, pay.contribution_id, pay.charge_id
    local_counted = pay is not None and pay.status == PAYMENT_REFUNDED
    if r is None:
        if not local_counted:
            return None
        row.stripe_status = "not in Stripe"
        row.problem, row.remedy = "absent", "cancel"
        row.detail = f"paydesk has a refund of {_money(-pay.amount, pay.currency)}; Stripe has no refund {refund_id}"
        return row
    row.charge_id = sid(r.get("charge")) or row.charge_id
    row.stripe_status = r.get("status") or "?"
    row.stripe_amount = -int(r.get("amount") or 0)
    if r.get("status") not in REFUND_COUNTED:
        if not local_counted:
            return None
        row.problem, row.remedy = "status", "fetch"
        row.detail = f"Stripe has the refund as {row.stripe_status}; paydesk counts it as refunded"
    elif pay is None:
        row.problem, row.remedy = "missing", "fetch"
        row.detail = f"Stripe refunded {_money(-row.stripe_amount, row.currency)}; paydesk has no refund"
    elif pay.status != PAYMENT_REFUNDED:
        row.problem, row.remedy = "status", "fetch"
        row.detail = f"Stripe has the refund {row.stripe_status}; paydesk has it {pay.status}"
    elif pay.amount != row.stripe_amount:
        row.problem, row.remedy = "amount", "fetch"
        row.detail = f"Stripe refunded {_money(-row.stripe_amount, row.currency)}, paydesk {_money(-pay.amount, pay.currency)}"
    return row


def _invoice_row(inv: dict | None, c: Contribution | None, invoice_id: str) -> Row | None:
    """A Stripe invoice (None: Stripe has none) next to its contribution."""
    row = Row("invoice", invoice_id, from_unix(inv.get("created")) if inv else c.receive_date if c else None,
              ((inv or {}).get("currency") or (c.currency if c else "")).lower())
    if c is not None:
        row.local_amount, row.local_status, row.contribution_id = c.amount, c.status, c.id
    local_paid = c is not None and c.status in DONE
    if inv is None:
        if not local_paid:
            return None
        row.stripe_status = "not in Stripe"
        row.problem, row.remedy = "absent", "cancel"
        row.detail = f"paydesk has a {c.status.lower()} contribution; Stripe has no invoice {invoice_id}"
        return row
    row.customer_id = sid(inv.get("customer"))
    row.stripe_status = inv.get("status") or "?"
    paid = row.stripe_status == "paid"
    row.stripe_amount = int(inv.get("amount_paid") or 0) if paid else int(inv.get("amount_due") or 0)
    if not paid:
        if not local_paid:
            return None  # an open or void invoice with no completed contribution: nothing to compare
        row.problem, row.remedy = "status", "cancel"
        row.detail = f"Stripe has the invoice {row.stripe_status}; paydesk a {c.status.lower()} contribution"
    elif c is None:
        row.problem, row.remedy = "missing", "fetch"
        row.detail = f"Stripe has {_money(row.stripe_amount, row.currency)} paid; paydesk has no contribution"
    elif c.status not in DONE:
        row.problem, row.remedy = "status", "fetch"
        row.detail = f"Stripe has it paid; paydesk has the contribution {c.status}"
    elif c.amount != row.stripe_amount:
        row.problem, row.remedy = "amount", "fetch"
        row.detail = f"Stripe {_money(row.stripe_amount, row.currency)}, paydesk {_money(c.amount, c.currency)}"
    return row


# -- Stripe's side -----------------------------------------------------------------------------

def _list_window(reader: StripeReader, resource: str, since: datetime, until: datetime, *,
                 server_filter: bool) -> list[dict]:
    """Every object of ``resource`` created in the period, newest first.

    With ``server_filter`` Stripe is asked for the period; a server that cannot filter
    (localstripe answers 400) is then read without it. Pages are read only until they are
    older than the period (Stripe lists newest first), whoever did the filtering."""
    lo, hi = to_unix(since), to_unix(until)
    created = {"gte": lo, "lt": hi} if server_filter else None
    pages = reader.pages(resource, created=created)
    try:
        first = next(pages, [])
    except GatewayError as err:
        if created is None or err.http_status != 400:
            raise
        pages = reader.pages(resource)
        first = next(pages, [])
    out: list[dict] = []
    for data in chain([first], pages):
        out.extend(o for o in data if lo <= int(o.get("created") or 0) < hi)
        if len(out) > MAX_OBJECTS:
            raise ServiceError(f"Stripe has more than {MAX_OBJECTS:,} {resource} in this period: "
                               f"choose a shorter one")
        if data and all(int(o.get("created") or 0) < lo for o in data):
            break  # older than the period from here on
    return out


def _retrieve(reader: StripeReader, obj: str, stripe_id: str) -> dict | None:
    """The object as Stripe has it now; None when Stripe has no such object."""
    try:
        return reader.get(RESOURCES[obj], stripe_id)
    except GatewayError as err:
        if err.not_found:
            return None
        raise


# -- paydesk's side ----------------------------------------------------------------------------

def _chunks(ids: list[str], n: int = 500) -> Iterator[list[str]]:
    for i in range(0, len(ids), n):
        yield ids[i:i + n]


def _payments(proc: PaymentProcessor, trxn_ids: list[str]) -> dict[str, Payment]:
    found: dict[str, Payment] = {}
    for chunk in _chunks(trxn_ids):
        for p in db.session.scalars(select(Payment).where(Payment.processor_id == proc.id,
                                                          Payment.trxn_id.in_(chunk))):
            found[p.trxn_id] = p
    return found


def _contributions(proc: PaymentProcessor, invoice_ids: list[str]) -> dict[str, Contribution]:
    found: dict[str, Contribution] = {}
    for chunk in _chunks(invoice_ids):
        for c in db.session.scalars(select(Contribution).where(Contribution.processor_id == proc.id,
                                                               Contribution.invoice_id.in_(chunk))):
            found[c.invoice_id] = c
    return found


def _local_charges(proc: PaymentProcessor, since: datetime, until: datetime) -> list[Payment]:
    return list(db.session.scalars(select(Payment).where(
        Payment.processor_id == proc.id, Payment.refund_id.is_(None), Payment.amount > 0,
        Payment.status == COMPLETED, Payment.payment_date >= since, Payment.payment_date < until)))


def _local_refunds(proc: PaymentProcessor, since: datetime, until: datetime) -> list[Payment]:
    return list(db.session.scalars(select(Payment).where(
        Payment.processor_id == proc.id, Payment.refund_id.is_not(None), Payment.status == PAYMENT_REFUNDED,
        Payment.payment_date >= since, Payment.payment_date < until)))


def _local_invoices(proc: PaymentProcessor, since: datetime, until: datetime) -> list[Contribution]:
    return list(db.session.scalars(select(Contribution).where(
        Contribution.processor_id == proc.id, Contribution.invoice_id.is_not(None), Contribution.status.in_(DONE),
        Contribution.receive_date >= since, Contribution.receive_date < until)))


# -- the comparison ----------------------------------------------------------------------------

@dataclass
class Scan:
    processor: PaymentProcessor
    since: datetime
    until: datetime
    rows: list[Row]  # every compared row (in step too) of the chosen objects, newest first
    taken_at: datetime = field(default_factory=utcnow)
    id: int | None = None  # the stored scan (``recent_scan``), if it was kept

    def counts(self) -> dict[str, int]:
        """Rows per problem (and ``in step``), whatever the filter's problem choice."""
        counts = dict.fromkeys((*PROBLEMS, "in step"), 0)
        counts.update(Counter(r.problem or "in step" for r in self.rows))
        return counts

    def shown(self, flt: ReconcileFilter) -> list[Row]:
        return [r for r in self.rows if (r.problem or flt.matching) and (not flt.problem or r.problem in flt.problem)]

    @property
    def differences(self) -> list[Row]:
        return [r for r in self.rows if r.problem]


def scan(proc: PaymentProcessor, flt: ReconcileFilter) -> Scan:
    """Compare Stripe and paydesk for the filter's objects and period."""
    since, until = flt.window()
    reader = StripeReader(proc)
    objects = flt.object or list(OBJECTS)
    rows: list[Row] = []
    if "charge" in objects:
        rows += _compare(reader, "charge", _list_window(reader, "charges", since, until, server_filter=True),
                         lambda ids: _payments(proc, ids), _local_charges(proc, since, until),
                         lambda p: p.trxn_id, _charge_row)
    if "refund" in objects:
        rows += _compare(reader, "refund", _list_window(reader, "refunds", since, until, server_filter=False),
                         lambda ids: _payments(proc, ids), _local_refunds(proc, since, until),
                         lambda p: p.trxn_id, _refund_row)
    if "invoice" in objects:
        rows += _compare(reader, "invoice", _list_window(reader, "invoices", since, until, server_filter=False),
                         lambda ids: _contributions(proc, ids), _local_invoices(proc, since, until),
                         lambda c: c.invoice_id, _invoice_row)
    rows.sort(key=_row_key, reverse=True)
    return Scan(proc, since, until, rows)


# -- a scan kept for the page's views and the fix-all job ------------------------------------------
#
# A scan asks Stripe for every charge, refund and invoice of the period: seconds for a busy account.
# The page asks again for every page flip, filter keystroke and the "fix all" confirmation, and the job
# for its rows, so a scan is kept in the database (``ReconcileScan``), not in one web process: any web
# process serves the page's next view and the worker runs the job. Pages reuse a scan for
# ``RECONCILE_SCAN_REUSE_SECONDS`` (60); the job works from the scan its confirmation counted.

SCAN_KEEP = timedelta(hours=1)  # then deleted, unless an active fix-all job works from it


def _objects(flt: ReconcileFilter) -> str:
    return ",".join(sorted(flt.object or OBJECTS))


def _period(flt: ReconcileFilter) -> str:
    """The period as asked: "the last 7 days" is the same period a minute later."""
    parts = [f"since={flt.since.isoformat()}"] if flt.since else [f"days={flt.days}"]
    if flt.until:
        parts.append(f"until={flt.until.isoformat()}")
    return ";".join(parts)


def recent_scan(proc: PaymentProcessor, flt: ReconcileFilter) -> Scan:
    """The page's scan: one kept for the same processor, objects and period that is less than
    ``RECONCILE_SCAN_REUSE_SECONDS`` old (and that no fix-all job is working through: its rows are being
    fixed), else a new one (kept). Commits when it keeps one."""
    reuse = timedelta(seconds=float(current_app.config["RECONCILE_SCAN_REUSE_SECONDS"]))
    kept = db.session.scalars(select(ReconcileScan).where(
        ReconcileScan.processor_id == proc.id, ReconcileScan.objects == _objects(flt),
        ReconcileScan.period == _period(flt), ReconcileScan.taken_at > utcnow() - reuse,
        ReconcileScan.id.not_in(_scans_in_use() or [0]))
        .order_by(ReconcileScan.taken_at.desc()).limit(1)).first()
    if kept is not None:
        return _loaded(proc, kept)
    return _keep(scan(proc, flt), _objects(flt), _period(flt))


def kept_scan(proc: PaymentProcessor, flt: ReconcileFilter) -> Scan | None:
    """The newest kept scan for the filter's processor, objects and period, whatever its age (never a new
    one: Stripe is not asked); None when there is none."""
    kept = db.session.scalars(select(ReconcileScan).where(
        ReconcileScan.processor_id == proc.id, ReconcileScan.objects == _objects(flt),
        ReconcileScan.period == _period(flt)).order_by(ReconcileScan.taken_at.desc()).limit(1)).first()
    return _loaded(proc, kept) if kept is not None else None


def with_row(s: Scan, row: Row) -> Scan:
    """``s`` with ``row`` in place of the row of the same Stripe object (what the page's summary counts
    after that row was fixed)."""
    rows = [row if (r.object, r.stripe_id) == (row.object, row.stripe_id) else r for r in s.rows]
    return Scan(s.processor, s.since, s.until, rows, taken_at=s.taken_at, id=s.id)


def _keep(s: Scan, objects: str, period: str) -> Scan:
    """Store a scan (and delete the old ones no active job works from). Commits."""
    rows = [{**asdict(r), "created": r.created.isoformat() if r.created else None} for r in s.rows]
    immediate()
    kept = ReconcileScan(processor_id=s.processor.id, objects=objects, period=period, since=s.since, until=s.until,
                         taken_at=s.taken_at, rows=rows)
    db.session.add(kept)
    db.session.execute(delete(ReconcileScan).where(ReconcileScan.taken_at < utcnow() - SCAN_KEEP,
                                                   ReconcileScan.id.not_in(_scans_in_use() or [0])))
    db.session.commit()
    s.id = kept.id
    return s


def _loaded(proc: PaymentProcessor, kept: ReconcileScan) -> Scan:
    rows = [Row(**{**r, "created": datetime.fromisoformat(r["created"]) if r.get("created") else None})
            for r in kept.rows]
    return Scan(proc, kept.since, kept.until, rows, taken_at=kept.taken_at, id=kept.id)


def _scans_in_use() -> list[int]:
    """The scans active fix-all jobs work from (their cursors name them)."""
    cursors = db.session.scalars(select(Job.cursor).where(Job.kind == "reconcile.fix_all",
                                                          Job.status.in_(JOB_ACTIVE)))
    return [int(c["scan"]) for c in cursors if isinstance(c, dict) and isinstance(c.get("scan"), int)]


def forget_scans(proc: PaymentProcessor) -> None:
    """paydesk's records changed (a fix): the next page view compares again. Scans an active job works
    from are kept. Commits."""
    immediate()
    db.session.execute(delete(ReconcileScan).where(ReconcileScan.processor_id == proc.id,
                                                   ReconcileScan.id.not_in(_scans_in_use() or [0])))
    db.session.commit()


def _compare(reader: StripeReader, obj: str, stripe_objs: list[dict], local_for, local_in_period: list,
             local_key, make_row) -> list[Row]:
    by_id = {o["id"]: o for o in stripe_objs}
    local = local_for(list(by_id))
    rows = [make_row(o, local.get(i), i) for i, o in by_id.items()]
    for record in local_in_period:  # what paydesk has in the period and Stripe's list did not show
        key = local_key(record)
        if key not in by_id:
            rows.append(make_row(_retrieve(reader, obj, key), record, key))
    return [r for r in rows if r is not None]


def _row_key(r: Row) -> tuple[int, str]:
    return (to_unix(r.created) if r.created else 0, r.key)


def page(rows: list[Row], flt: ReconcileFilter) -> Page:
    """A keyset page of rows (newest first), like every list page."""
    return sequence_page(rows, _row_key, flt)


def check_one(proc: PaymentProcessor, obj: str, stripe_id: str) -> Row:
    """One row as it stands now (Stripe asked again). Raises ``ServiceError`` for a bad id,
    or when neither side has the object."""
    obj, stripe_id = _checked_ref(obj, stripe_id)
    try:
        found = _retrieve(StripeReader(proc), obj, stripe_id)
    except GatewayError as err:
        raise ServiceError(f"Could not ask Stripe about {stripe_id}: {err.message}") from err
    local = (_contributions if obj == "invoice" else _payments)(proc, [stripe_id]).get(stripe_id)
    row = {"charge": _charge_row, "refund": _refund_row, "invoice": _invoice_row}[obj](found, local, stripe_id)
    if row is not None:
        return row
    if found is None and local is None:
        raise ServiceError(f"neither Stripe nor paydesk has {stripe_id}")
    # nothing to compare: neither side counts it as paid (a failed charge, a record already cancelled)
    row = Row(obj, stripe_id, from_unix((found or {}).get("created")), ((found or {}).get("currency") or
                                                                         getattr(local, "currency", "")).lower(),
              stripe_status=(found or {}).get("status") or "not in Stripe",
              detail="neither side counts it as paid")
    if local is not None:
        row.local_amount, row.local_status = local.amount, local.status
        row.contribution_id = local.id if obj == "invoice" else local.contribution_id
        row.payment_id = None if obj == "invoice" else local.id
    return row


def _checked_ref(obj: str, stripe_id: str) -> tuple[str, str]:
    obj, stripe_id = (obj or "").strip(), (stripe_id or "").strip()
    if obj not in OBJECTS:
        raise ServiceError(f"{obj!r} is not one of {', '.join(OBJECTS)}", field="object")
    if not stripe_id.startswith(ID_PREFIXES[obj]) or len(stripe_id) > 255 or not stripe_id.replace("_", "").isalnum():
        raise ServiceError(f"{stripe_id!r} is not a Stripe {obj} id (they start with "
                           f"{' or '.join(ID_PREFIXES[obj])})", field="id")
    return obj, stripe_id


# -- fixing ------------------------------------------------------------------------------------

@dataclass
class FixResult:
    before: Row
    after: Row
    actions: list[str]

    @property
    def in_step(self) -> bool:
        return self.after.problem is None

    @property
    def message(self) -> str:
        did = "; ".join(self.actions) or "nothing done"
        if not self.actions:
            return "Already in step: nothing to do."
        if self.in_step:
            return f"Fixed ({did}): now in step."
        return f"Tried ({did}), but it still differs: {self.after.detail}"


def fix(proc: PaymentProcessor, obj: str, stripe_id: str, *, cancel_local: bool = False,
        before: Row | None = None) -> FixResult:
    """Bring one row in step (see the module's docstring). ``before`` is the row as ``check_one``
    gave it a moment ago (the page's look at it, which its confirmation showed); without it the row
    is looked at now. Raises ``ServiceError`` when the row needs the local record cancelled and
    ``cancel_local`` is not given, or a step fails."""
    obj, stripe_id = _checked_ref(obj, stripe_id)
    if before is None or (before.object, before.stripe_id) != (obj, stripe_id):
        before = check_one(proc, obj, stripe_id)
    actions: list[str] = []
    if before.problem is None:
        return FixResult(before, before, actions)
    try:
        return FixResult(before, *_put_right(proc, before, cancel_local, actions))
    finally:
        if actions:
            forget_scans(proc)  # paydesk's records changed: the page compares again


def _put_right(proc: PaymentProcessor, before: Row, cancel_local: bool, actions: list[str]) -> tuple[Row, list[str]]:
    obj, stripe_id = before.object, before.stripe_id
    if before.remedy == "cancel":
        if not cancel_local:
            raise ServiceError(f"{stripe_id}: {before.detail}. Fixing this marks paydesk's record Cancelled; "
                               f"confirm to do that")
        actions.append(_cancel_local(proc, before))
        return check_one(proc, obj, stripe_id), actions
    event = _stored_event(proc, before)
    if event is not None:
        actions.append(_replay(proc, event))
        after = check_one(proc, obj, stripe_id)
        if after.problem is None:
            return after, actions
    if obj == "invoice":
        actions.append(_settle_invoice(proc, stripe_id))
    else:
        from admin.services.records.imports import import_charge

        charge_id = stripe_id if obj == "charge" else before.charge_id
        if not charge_id:
            raise ServiceError(f"Stripe's refund {stripe_id} names no charge to import")
        import_charge(proc, charge_id, no_receipt=True)
        actions.append(f"imported {charge_id}")
    return check_one(proc, obj, stripe_id), actions


def _stored_event(proc: PaymentProcessor, row: Row) -> StripeEvent | None:
    """The stored event whose replay records this row's object, if paydesk has one."""
    from admin.services.events.ops import event_for_charge

    if row.object == "charge":
        return event_for_charge(proc, {"id": row.stripe_id, "payment_intent": row.intent_id})
    if row.object == "refund":
        q = select(StripeEvent).where(StripeEvent.processor_id == proc.id, StripeEvent.type.in_(REFUND_EVENTS),
                                      (StripeEvent.object_id == row.stripe_id) if not row.charge_id else
                                      ((StripeEvent.object_id == row.stripe_id) | (StripeEvent.charge_id == row.charge_id)))
    else:
        q = select(StripeEvent).where(StripeEvent.processor_id == proc.id, StripeEvent.type.in_(INVOICE_EVENTS),
                                      StripeEvent.invoice_id == row.stripe_id)
    return db.session.scalars(q.order_by(StripeEvent.created.desc(), StripeEvent.id.desc()).limit(1)).first()


def _replay(proc: PaymentProcessor, event: StripeEvent) -> str:
    from admin.services.events.ops import replay

    res = replay(proc, row=event, no_receipt=True)  # writes its own audit entry
    return f"replayed {event.event_id} ({event.type}): {res.status}"


def _settle_invoice(proc: PaymentProcessor, invoice_id: str) -> str:
    """Record a paid invoice as Stripe has it, its amount included. Commits, with its audit entry."""
    from admin.services.records.contributions import read_invoice, settle_invoice

    reader = StripeReader(proc, fresh=True)
    try:
        inv = reader.get("invoices", invoice_id)
        read_invoice(reader, proc.id, inv)  # Stripe first, then the write transaction
    except GatewayError as err:
        audit.record("reconcile.settle_invoice", object_type="invoice", object_id=invoice_id, processor_id=proc.id,
                     ok=False, message=str(err), stripe_request_id=err.request_id)
        raise stripe_refusal(err, "invoice", invoice_id) from err
    try:
        c = write_after_reading(reader, lambda: settle_invoice(reader, proc, invoice_id, no_receipt=True))
    except GatewayError as err:
        db.session.rollback()
        raise ServiceError(f"Stripe: {err.message}") from err
    if c is None:
        db.session.rollback()
        raise ServiceError(f"{invoice_id} is {inv.get('status')} in Stripe: nothing to settle")
    params: dict[str, Any] = {"invoice": invoice_id}
    paid = int(inv.get("amount_paid") or 0)
    if c.amount != paid:
        params["amount_was"], c.amount = c.amount, paid
    audit.record("reconcile.settle_invoice", object_type="contribution", object_id=str(c.id), processor_id=proc.id,
                 parameters=params, stripe_request_id=reader.request_ids[0] if reader.request_ids else None,
                 commit=False)
    db.session.commit()
    return f"settled {invoice_id}" + (" and corrected its amount" if "amount_was" in params else "")


def _cancel_local(proc: PaymentProcessor, row: Row) -> str:
    """paydesk counts as paid what Stripe does not: mark the local record Cancelled, with a note.
    Commits, with its audit entry."""
    _, actor = audit.current_actor()
    when = utcnow().strftime("%Y-%m-%d")
    immediate()
    if row.object == "invoice":
        c = db.session.get(Contribution, row.contribution_id)
        was = {"status": c.status, "amount": c.amount}
        c.status = CANCELLED
        c.failure_message = (f"Stripe: {row.detail}. Marked Cancelled by {actor} on {when} (reconciliation)")[:500]
        what = f"marked contribution #{c.id} Cancelled"
    else:
        pay = db.session.get(Payment, row.payment_id)
        c = pay.contribution
        was = {"status": pay.status, "amount": pay.amount, "contribution_status": c.status}
        pay.status = PAYMENT_VOID
        recompute(c)
        counted = [p for p in c.payments if p.amount > 0 and p.status == COMPLETED]
        note = f"{row.object} {row.stripe_id}: {row.detail}. Marked Cancelled by {actor} on {when} (reconciliation)"
        if row.object == "charge" and not counted and c.status in DONE:
            c.status = CANCELLED
        c.failure_message = note[:500]
        what = f"marked {row.object} payment #{pay.id} Cancelled"
    audit.record("reconcile.cancel_local", object_type="contribution", object_id=str(c.id), processor_id=proc.id,
                 parameters={"object": row.object, "id": row.stripe_id, "problem": row.problem, "was": was},
                 message=row.detail, commit=False)
    db.session.commit()
    return what


# -- fix all: a job ----------------------------------------------------------------------------

def job_params(flt: ReconcileFilter, *, cancel_local: bool,
               window: tuple[datetime, datetime] | None = None) -> dict[str, Any]:
    """What a "fix all" job stores: the period resolved to fixed times (``window``: the confirmation's
    scan's, so the job fixes what the confirmation counted), the object and problem choices."""
    since, until = window or flt.window()
    return {"since": since.isoformat(timespec="seconds"), "until": until.isoformat(timespec="seconds"),
            "object": list(flt.object), "problem": list(flt.problem), "cancel_local": bool(cancel_local)}


def filter_of(params: dict[str, Any]) -> ReconcileFilter:
    try:
        since, until = datetime.fromisoformat(params["since"]), datetime.fromisoformat(params["until"])
    except (KeyError, TypeError, ValueError):
        raise ServiceError("the period of this job is damaged; start it again") from None
    flt = ReconcileFilter.parse_or_raise({"object": params.get("object") or [], "problem": params.get("problem") or []})
    flt.since, flt.until = since, until
    return flt


def to_fix(rows: list[Row], flt: ReconcileFilter, *, cancel_local: bool) -> tuple[list[Row], list[Row]]:
    """(rows "fix all" works on, rows it leaves for staff: those needing confirmation)."""
    chosen = [r for r in rows if r.problem and (not flt.problem or r.problem in flt.problem)]
    return ([r for r in chosen if r.remedy != "cancel" or cancel_local],
            [r for r in chosen if r.remedy == "cancel" and not cancel_local])


def money_totals(rows: list[Row]) -> dict[str, int]:
    totals: dict[str, int] = {}
    for r in rows:
        if r.money:
            totals[r.money[1]] = totals.get(r.money[1], 0) + r.money[0]
    return dict(sorted(totals.items()))


def _title(p: dict) -> str:
    span = f"{str(p.get('since', ''))[:10]} to {str(p.get('until', ''))[:10]}"
    what = ", ".join(p.get("object") or []) or "charges, refunds and invoices"
    return f"Reconcile {what}, {span}: fix every difference" + (
        " (cancelling local records Stripe lacks)" if p.get("cancel_local") else "")


def _job_scan(proc: PaymentProcessor, flt: ReconcileFilter) -> Scan:
    """The scan a fix-all job works from: the one its confirmation counted (kept for exactly this
    processor, objects and period, and no other job's), else a new one, kept."""
    kept = db.session.scalars(select(ReconcileScan).where(
        ReconcileScan.processor_id == proc.id, ReconcileScan.objects == _objects(flt),
        ReconcileScan.since == flt.since, ReconcileScan.until == flt.until,
        ReconcileScan.id.not_in(_scans_in_use() or [0]))
        .order_by(ReconcileScan.taken_at.desc()).limit(1)).first()
    if kept is not None:
        return _loaded(proc, kept)
    return _keep(scan(proc, flt), _objects(flt), _period(flt))


@job_kind("reconcile.fix_all", title=_title)
def fix_all(ctx: JobContext):
    """Fix every difference of a scan, one row per unit. The cursor is the scan's id and an index into
    its rows to fix; should the scan be gone when the job resumes, a new one is taken (rows fixed
    already are in step in it, so nothing is done twice)."""
    proc = ctx.require_processor()
    cancel_local = bool(ctx.params.get("cancel_local"))
    flt = filter_of(ctx.params)
    kept = db.session.get(ReconcileScan, ctx.cursor["scan"]) if isinstance(ctx.cursor.get("scan"), int) else None
    if kept is None:
        fresh = "scan" in ctx.cursor
        s = _job_scan(proc, flt)
        todo, left = to_fix(s.rows, flt, cancel_local=cancel_local)
        ctx.cursor.pop("keys", None)  # a job started before scans were kept listed every key here
        ctx.cursor.update(scan=s.id, i=0)
        ctx.total = ctx.done + len(todo)
        if left and not fresh:
            ctx.count("left for staff (need confirmation)", len(left))
            ctx.note(f"{len(left)} row(s) would mark paydesk's records Cancelled; fix them one by one on "
                     f"/reconcile, or tick \"also cancel\"")
        yield
    else:
        todo, _ = to_fix(_loaded(proc, kept).rows, flt, cancel_local=cancel_local)
    for i in range(int(ctx.cursor.get("i", 0)), len(todo)):
        obj, stripe_id = todo[i].object, todo[i].stripe_id
        try:
            res = fix(proc, obj, stripe_id, cancel_local=cancel_local)
            ctx.count("fixed" if res.actions and res.in_step else "already in step" if not res.actions
                      else "still differ")
            if res.actions and not res.in_step:
                ctx.note(f"{stripe_id}: {res.message}")
        except ServiceError as err:
            ctx.count("failed")
            ctx.note(f"{stripe_id}: {err.message}")
        ctx.cursor["i"] = i + 1
        ctx.done += 1
        yield
    immediate()  # its rows are fixed now: no page or job is to show them again
    db.session.execute(delete(ReconcileScan).where(ReconcileScan.id == ctx.cursor["scan"]))
    db.session.commit()
