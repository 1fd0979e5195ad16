"""Subscriptions as staff see them: the ``/subscriptions`` filter and pages, a subscription's
Stripe side (fetched live: the subscription, its invoices and their charges) next to paydesk's
(the recurring contribution, its contributions and payments) with every difference named,
and cancelling one in Stripe and here.

What a comparison found is kept in ``subscription_check`` (the "differs from Stripe" filter).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from datetime import datetime
from itertools import islice
from typing import Any, ClassVar

from sqlalchemy import Select, func, or_, select
from sqlalchemy.orm import selectinload

from admin.dbutil import immediate, insert_ignore
from admin.errors import ServiceError, stripe_failure
from admin.extensions import db
from admin.listing import Amount, Filter, KeyColumn, Page, capped_counts, keyset_page, processor_field, walk
from admin.models import (
    RECUR_CANCELLED,
    RECUR_COMPLETED,
    RECUR_FAILING,
    RECUR_IN_PROGRESS,
    RECUR_PENDING,
    Contribution,
    ContributionRecur,
    Payment,
    PaymentProcessor,
    SubscriptionCheck,
)
from admin.models.records import RECUR_WHEN
from admin.money import format_money
from admin.services.core import audit
from admin.services.core.stripe_reader import StripeReader
from admin.services.records.common import amount_between, check_range, contacts_matching
from admin.services.records.contributions import DONE, FAILED, _invoice_charge
from admin.services.records.recurring import ENDED, STATUS_OF, by_subscription, sync_subscription
from admin.stripe_gateway import GatewayError
from admin.stripe_shapes import sid, subscription_terms
from admin.timeutil import from_unix, utcnow

RECUR_STATUSES = (RECUR_PENDING, RECUR_IN_PROGRESS, RECUR_FAILING, RECUR_CANCELLED, RECUR_COMPLETED)
INTERVALS = ("day", "week", "month", "year")


@dataclass
class SubscriptionFilter(Filter):
    LABELS: ClassVar[dict[str, str]] = {
        "since": "Created from",
        "until": "Created to (inclusive)",
        "interval": "Every",
        "differs": "Against Stripe",
    }

    status: list[str] = field(default_factory=list, metadata={"choices": RECUR_STATUSES})
    ppid: int | None = processor_field()
    q: str | None = None
    min_amount: Amount | None = None
    max_amount: Amount | None = None
    currency: list[str] = field(default_factory=list)
    interval: list[str] = field(default_factory=list, metadata={"choices": INTERVALS})
    since: datetime | None = None
    until: datetime | None = field(default=None, metadata={"end": True})
    differs: bool = False
    subscription: str | None = field(default=None, metadata={"stripe_id": "subscription"})
    contact_id: int | None = None

    def check(self, errors: dict[str, str]) -> None:
        self.currency = [c.lower() for c in self.currency]
        check_range(self, errors)


RECUR_KEY: list[KeyColumn] = [RECUR_WHEN, ContributionRecur.id]


def _recur_key(r: Any) -> list:
    return [r.start_date or r.created_at, r.id]


def differing() -> Select:
    """(processor, subscription) pairs whose last comparison with Stripe found a difference."""
    return select(SubscriptionCheck.processor_id, SubscriptionCheck.subscription_id).where(
        SubscriptionCheck.differs.is_(True)
    )


def subscription_query(flt: SubscriptionFilter, *, with_status: bool = True) -> Select:
    q = select(ContributionRecur)
    if with_status and flt.status:
        q = q.where(ContributionRecur.status.in_(flt.status))
    if flt.ppid is not None:
        q = q.where(ContributionRecur.processor_id == flt.ppid)
    if flt.q:
        text = flt.q.strip()
        q = q.where(
            or_(
                ContributionRecur.contact_id.in_(contacts_matching(text)),
                ContributionRecur.subscription_id == text,
                ContributionRecur.customer_id == text,
            )
        )
    money = amount_between(
        ContributionRecur.amount, ContributionRecur.currency, flt.min_amount, flt.max_amount
    )
    if money is not None:
        q = q.where(money)
    if flt.currency:
        q = q.where(func.lower(ContributionRecur.currency).in_(flt.currency))
    if flt.interval:
        q = q.where(ContributionRecur.interval.in_(flt.interval))
    if flt.since:
        q = q.where(RECUR_WHEN >= flt.since)
    if flt.until:
        q = q.where(RECUR_WHEN < flt.until)
    if flt.differs:
        d = differing().subquery()
        q = q.where(
            select(d.c.subscription_id)
            .where(
                d.c.processor_id == ContributionRecur.processor_id,
                d.c.subscription_id == ContributionRecur.subscription_id,
            )
            .exists()
        )
    if flt.subscription:
        q = q.where(ContributionRecur.subscription_id == flt.subscription.strip())
    if flt.contact_id is not None:
        q = q.where(ContributionRecur.contact_id == flt.contact_id)
    return q


def subscription_page(flt: SubscriptionFilter) -> Page:
    q = subscription_query(flt).options(selectinload(ContributionRecur.contact))
    return keyset_page(q, RECUR_KEY, flt, key_of=_recur_key)


def status_counts(flt: SubscriptionFilter) -> dict[str, int]:
    """How many subscriptions of each status match the rest of the filter, each counted up to
    ``listing.COUNT_CAP`` (as every list's status chips)."""
    return capped_counts(
        subscription_query(flt, with_status=False),
        ContributionRecur.status,
        ContributionRecur.id,
        RECUR_STATUSES,
    )


def checks_for(recurs: list[ContributionRecur]) -> dict[tuple[int, str], SubscriptionCheck]:
    """The last comparison of each recurring contribution on a page (one query)."""
    ids = {r.subscription_id for r in recurs}
    if not ids:
        return {}
    rows = db.session.scalars(select(SubscriptionCheck).where(SubscriptionCheck.subscription_id.in_(ids)))
    return {(c.processor_id, c.subscription_id): c for c in rows}


def subscription_rows(flt: SubscriptionFilter, limit: int | None = None):
    """Every recurring contribution the filter matches, in page order, as dicts (the CLI)."""
    q = subscription_query(flt).options(selectinload(ContributionRecur.contact))

    def rows():
        for chunk in walk(q, RECUR_KEY, flt, key_of=_recur_key, scalars=True, chunk=500):
            checks = checks_for(chunk)
            for r in chunk:
                yield recur_dict(r, checks.get((r.processor_id, r.subscription_id)))

    yield from islice(rows(), limit)


def _iso(dt: datetime | None) -> str | None:
    return dt.isoformat(timespec="seconds") if dt else None


def recur_dict(r: ContributionRecur, check: SubscriptionCheck | None = None) -> dict[str, Any]:
    return {
        "id": r.id,
        "contact_id": r.contact_id,
        "contact": r.contact.display_name if r.contact else None,
        "subscription_id": r.subscription_id,
        "customer_id": r.customer_id,
        "amount": r.amount,
        "currency": r.currency,
        "display_amount": format_money(r.amount, r.currency),
        "interval": r.interval,
        "interval_count": r.interval_count,
        "status": r.status,
        "stripe_status": r.stripe_status,
        "start_date": _iso(r.start_date),
        "next_sched_date": _iso(r.next_sched_date),
        "cancel_date": _iso(r.cancel_date),
        "failure_count": r.failure_count,
        "processor_id": r.processor_id,
        "differs_from_stripe": None if check is None else check.differs,
        "checked_at": _iso(check.checked_at) if check else None,
    }


# -- Stripe's side next to paydesk's ---------------------------------------------------------


@dataclass
class InvoiceRow:
    """One invoice of the subscription in Stripe, its charge, and what paydesk has for them."""

    invoice: dict
    charge: dict | None
    contribution: Contribution | None
    payment: Payment | None
    differences: list[dict] = field(default_factory=list)

    @property
    def id(self) -> str:
        return self.invoice["id"]

    @property
    def created(self) -> datetime | None:
        return from_unix(self.invoice.get("created"))

    @property
    def amount(self) -> int:
        inv = self.invoice
        return int(inv.get("amount_paid") or inv.get("amount_due") or 0)

    @property
    def currency(self) -> str:
        return (self.invoice.get("currency") or "").lower()

    @property
    def status(self) -> str:
        return self.invoice.get("status") or ""

    @property
    def charge_id(self) -> str | None:
        return self.charge["id"] if self.charge else None

    @property
    def found(self) -> bool:
        """The charge this invoice says there should be is recorded here (a completed contribution, and
        the charge as its payment); True for an invoice that charged nothing (nothing can be missing)."""
        if self.status != "paid":
            return True
        succeeded = self.charge is not None and self.charge.get("status") == "succeeded"
        return (
            self.contribution is not None
            and self.contribution.status in DONE
            and (not succeeded or self.payment is not None)
        )


def subscription_invoices(reader: StripeReader, subscription_id: str) -> list[dict]:
    """Every invoice of a subscription, oldest first."""
    out = [inv for page in reader.pages("invoices", subscription=subscription_id) for inv in page]
    return sorted(out, key=lambda inv: (inv.get("created") or 0, inv["id"]))


def invoice_rows(reader: StripeReader, processor: PaymentProcessor, invoices: list[dict]) -> list[InvoiceRow]:
    """Each invoice with its charge (resolved as the record mapping does) and the local records."""
    rows = []
    ids = [inv["id"] for inv in invoices]
    local = (
        {
            c.invoice_id: c
            for c in db.session.scalars(
                select(Contribution).where(
                    Contribution.processor_id == processor.id, Contribution.invoice_id.in_(ids)
                )
            )
        }
        if ids
        else {}
    )
    for inv in invoices:
        charge = None
        if inv.get("status") in ("paid", "open", "uncollectible") and inv.get("attempted", True):
            charge = _invoice_charge(reader, inv, succeeded_only=False)
        c = local.get(inv["id"])
        payment = None
        if c is not None and charge is not None:
            payment = next((p for p in c.payments if p.charge_id == charge["id"] and not p.refund_id), None)
        rows.append(InvoiceRow(inv, charge, c, payment))
    return rows


def _diff(what: str, obj: str, stripe: Any, paydesk: Any) -> dict:
    return {
        "what": what,
        "object": obj,
        "stripe": None if stripe is None else str(stripe),
        "paydesk": None if paydesk is None else str(paydesk),
    }


def expected_status(sub: dict) -> str:
    """The recurring contribution status a subscription in this state maps to."""
    if sub.get("status") in ENDED and sub.get("cancel_at") and not sub.get("canceled_at"):
        return RECUR_COMPLETED
    return STATUS_OF.get(sub.get("status") or "", RECUR_PENDING)


def compare(sub: dict | None, recur: ContributionRecur | None, rows: list[InvoiceRow]) -> list[dict]:
    """Every difference between Stripe's subscription (and its invoices and charges) and paydesk's
    recurring contribution (and its contributions and payments). Also marks each invoice row."""
    if sub is None:
        if recur is None:
            return []
        return [_diff("subscription", recur.subscription_id, "not in Stripe", recur.status)]
    if recur is None:
        return [_diff("subscription", sub["id"], sub.get("status"), "not in paydesk")]
    out = []
    want = expected_status(sub)
    ended = {RECUR_CANCELLED, RECUR_COMPLETED}
    if recur.status != want and not (want in ended and recur.status in ended):
        out.append(_diff("status", sub["id"], f"{sub.get('status')} ({want})", recur.status))
    terms = subscription_terms(sub)
    if (terms["amount"], terms["currency"]) != (recur.amount, recur.currency):
        out.append(
            _diff(
                "amount",
                sub["id"],
                format_money(terms["amount"], terms["currency"]),
                format_money(recur.amount, recur.currency),
            )
        )
    if (terms["interval"], terms["interval_count"]) != (recur.interval, recur.interval_count):
        out.append(
            _diff(
                "interval",
                sub["id"],
                f"every {terms['interval_count']} {terms['interval']}",
                f"every {recur.interval_count} {recur.interval}",
            )
        )
    if sid(sub.get("customer")) != recur.customer_id:
        out.append(_diff("customer", sub["id"], sid(sub.get("customer")), recur.customer_id))
    if want == RECUR_IN_PROGRESS and recur.status == RECUR_IN_PROGRESS:
        next_date = from_unix(terms["period_end"])
        if next_date and recur.next_sched_date and next_date.date() != recur.next_sched_date.date():
            out.append(_diff("next payment", sub["id"], next_date.date(), recur.next_sched_date.date()))
    seen = set()
    for row in rows:
        row.differences = _compare_invoice(row)
        out.extend(row.differences)
        if row.contribution is not None:
            seen.add(row.contribution.id)
    for c in db.session.scalars(
        select(Contribution).where(Contribution.recur_id == recur.id).order_by(Contribution.id)
    ):
        if c.id not in seen:
            out.append(
                _diff(
                    "contribution",
                    c.invoice_id or c.trxn_id or f"#{c.id}",
                    "not in Stripe",
                    f"#{c.id} {c.status}",
                )
            )
    return out


def _compare_invoice(row: InvoiceRow) -> list[dict]:
    inv, c = row.invoice, row.contribution
    status = inv.get("status")
    if status in ("draft", "void") or (not row.amount and status != "paid"):
        return []
    failed_attempt = status in ("open", "uncollectible") and int(inv.get("attempt_count") or 0) > 0
    if c is None:
        if status == "paid" or failed_attempt:
            return [_diff("contribution", inv["id"], f"invoice {status}", "missing")]
        return []
    out = []
    if status == "paid" and c.status not in DONE:
        out.append(_diff("contribution status", inv["id"], "paid", c.status))
    elif failed_attempt and c.status not in (FAILED, *DONE):
        out.append(_diff("contribution status", inv["id"], "payment failed", c.status))
    if status == "paid" and int(inv.get("amount_paid") or 0) != c.amount:
        out.append(
            _diff(
                "amount",
                inv["id"],
                format_money(int(inv.get("amount_paid") or 0), row.currency),
                format_money(c.amount, c.currency),
            )
        )
    charge = row.charge
    if (
        status == "paid"
        and charge is not None
        and charge.get("status") == "succeeded"
        and row.payment is None
    ):
        out.append(_diff("payment", charge["id"], "charge succeeded", "missing"))
    if row.payment is not None and charge is not None:
        captured = int(charge.get("amount_captured") or charge.get("amount") or 0)
        if captured != row.payment.amount:
            out.append(
                _diff(
                    "payment amount",
                    charge["id"],
                    format_money(captured, row.currency),
                    format_money(row.payment.amount, row.payment.currency),
                )
            )
    return out


def store_check(processor_id: int, subscription_id: str, sub: dict | None, differences: list[dict]) -> None:
    """Keep what a comparison found (the "differs from Stripe" filter reads it). Does not commit."""
    values = {
        "checked_at": utcnow(),
        "differs": bool(differences),
        "differences": differences,
        "stripe_status": sub.get("status") if sub else None,
    }
    if not insert_ignore(
        SubscriptionCheck,
        {"processor_id": processor_id, "subscription_id": subscription_id, **values},
        ["processor_id", "subscription_id"],
    ):
        check = db.session.scalar(
            select(SubscriptionCheck).where(
                SubscriptionCheck.processor_id == processor_id,
                SubscriptionCheck.subscription_id == subscription_id,
            )
        )
        for k, v in values.items():
            setattr(check, k, v)
    db.session.flush()


@dataclass
class SubscriptionDetail:
    subscription_id: str
    processor: PaymentProcessor
    recur: ContributionRecur | None
    stripe: dict | None  # None: Stripe has no such subscription (or could not be asked)
    stripe_error: str | None
    rows: list[InvoiceRow]
    differences: list[dict]
    local_contributions: list[Contribution]
    checked: bool  # Stripe answered, so the comparison is current

    @property
    def terms(self) -> dict | None:
        return subscription_terms(self.stripe) if self.stripe else None

    @property
    def ended(self) -> bool:
        status = (self.stripe or {}).get("status") or (self.recur.stripe_status if self.recur else None)
        return status in ENDED

    def differs(self, what: str, obj: str | None = None) -> dict | None:
        """The difference about ``what`` (of object ``obj``), for highlighting one field."""
        return next(
            (d for d in self.differences if d["what"] == what and (obj is None or d["object"] == obj)), None
        )


def find_recur(subscription_id: str) -> ContributionRecur | None:
    return db.session.scalar(
        select(ContributionRecur)
        .where(ContributionRecur.subscription_id == subscription_id)
        .order_by(ContributionRecur.id)
        .limit(1)
    )


def detail(processor: PaymentProcessor, subscription_id: str) -> SubscriptionDetail:
    """Both sides of a subscription: Stripe's fetched now, paydesk's from the database; the
    comparison is stored when Stripe answered. Commits (only the stored comparison)."""
    recur = by_subscription(processor.id, subscription_id)
    reader = StripeReader(processor)
    sub, error, rows = None, None, []
    try:
        sub = reader.get("subscriptions", subscription_id)
        rows = invoice_rows(reader, processor, subscription_invoices(reader, subscription_id))
    except GatewayError as err:
        if not err.not_found:
            error = f"Could not ask Stripe: {err.message}"
        sub, rows = None, []
    local = (
        list(
            db.session.scalars(
                select(Contribution)
                .where(Contribution.recur_id == recur.id)
                .options(selectinload(Contribution.payments))
                .order_by(Contribution.receive_date.desc(), Contribution.id.desc())
            )
        )
        if recur
        else []
    )
    differences = [] if error else compare(sub, recur, rows)
    if error is None and (recur is not None or sub is not None):
        store_check(processor.id, subscription_id, sub, differences)
        db.session.commit()
    return SubscriptionDetail(
        subscription_id, processor, recur, sub, error, rows, differences, local, error is None
    )


# -- cancelling ------------------------------------------------------------------------------


def cancel(processor: PaymentProcessor, subscription_id: str) -> ContributionRecur:
    """Cancel a subscription in Stripe now, then record it here (the recurring contribution
    becomes Cancelled). Audited with Stripe's request id. Commits."""
    from admin.stripe_gateway import Gateway

    recur = by_subscription(processor.id, subscription_id)
    if recur is not None and recur.stripe_status in ENDED:
        raise ServiceError(f"{subscription_id} has ended already ({recur.stripe_status})")
    try:
        sub = Gateway.for_processor(processor).call(
            "subscriptions",
            "cancel",
            subscription_id,
            idempotency_key=f"paydesk-cancel-{processor.id}-{subscription_id}",
        )
    except GatewayError as err:
        db.session.rollback()
        audit.record(
            "subscription.cancel",
            object_type="subscription",
            object_id=subscription_id,
            processor_id=processor.id,
            ok=False,
            message=str(err),
            stripe_request_id=err.request_id,
        )
        raise stripe_failure(err, doing=f"did not cancel {subscription_id}") from err
    immediate()
    recur = sync_subscription(StripeReader(processor), processor, dict(sub), stamp=int(time.time()))
    audit.record(
        "subscription.cancel",
        object_type="subscription",
        object_id=subscription_id,
        processor_id=processor.id,
        parameters={"recur_id": recur.id},
        message=f"Stripe status {sub.get('status')}",
        stripe_request_id=sub.request_id,
        commit=False,
    )
    db.session.commit()
    return recur
