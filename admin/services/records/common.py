"""Contributions and payments as staff list them: one filter object each, used alike by the
``/contributions`` and ``/payments`` pages, their CSV exports and ``contributions|payments list``;
and the pieces every record list shares (amount ranges, contact search, walking a filter's rows
in keyset chunks). Also the intents and events dicts the CLI prints.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal
from itertools import islice
from typing import Any, ClassVar

from sqlalchemy import Select, and_, func, not_, or_, select
from sqlalchemy.orm import selectinload

from admin.dbutil import contains_text, parse_id
from admin.extensions import db
from admin.listing import (
    Amount,
    Filter,
    KeyColumn,
    Page,
    Summary,
    capped_counts,
    keyset_page,
    processor_field,
    summary,
    walk,
)
from admin.models import (
    CANCELLED,
    COMPLETED,
    CONTRIBUTION_STATUSES,
    FAILED,
    PARTIALLY_REFUNDED,
    REFUNDED,
    Contact,
    Contribution,
    ContributionRecur,
    Payment,
    StripeCustomer,
    StripeEvent,
    StripePaymentIntent,
)
from admin.models.records import CONTRIBUTION_WHEN, PAYMENT_WHEN
from admin.money import THREE_DECIMAL, ZERO_DECIMAL, MoneyTotal, format_money, money_totals, to_major

# A contribution whose money came in (refunded later or not): it counts as given.
DONE = (COMPLETED, PARTIALLY_REFUNDED, REFUNDED)

TYPES = ("one-off", "recurring")
# A payment is Completed, Failed (a charge that failed), Refunded (a refund) or Cancelled (a refund that
# failed): contributions.PAYMENT_*.
PAYMENT_STATUSES = (COMPLETED, FAILED, REFUNDED, CANCELLED)
PAYMENT_KINDS = ("charge", "refund")


def _iso(dt: datetime | None) -> str | None:
    return dt.isoformat(timespec="seconds") if dt else None


# -- what every record filter shares ---------------------------------------------------------


def amount_between(amount_col, currency_col, low: Amount | None, high: Amount | None):
    """``low <= amount <= high`` for money typed in major units, whatever each row's currency
    (12.50 is 1250 cents, but 12 yen): one condition per currency exponent; a bound finer than
    a currency's smallest unit is rounded inwards (at least 12.50 yen is at least 13). None: no range."""
    if low is None and high is None:
        return None
    cur = func.lower(currency_col)
    groups = (
        (cur.in_(sorted(ZERO_DECIMAL)), 0),
        (cur.in_(sorted(THREE_DECIMAL)), 3),
        (not_(cur.in_(sorted(ZERO_DECIMAL | THREE_DECIMAL))), 2),
    )
    parts = []
    for in_group, exp in groups:
        bounds = []
        if low is not None:
            bounds.append(amount_col >= math.ceil(Decimal(low.text) * 10**exp))
        if high is not None:
            bounds.append(amount_col <= math.floor(Decimal(high.text) * 10**exp))
        parts.append(and_(in_group, *bounds))
    return or_(*parts)


def contacts_matching(text: str):
    """Ids of contacts whose name or email contains ``text`` (any case), or who have a Stripe
    customer with exactly this id."""
    by_customer = select(StripeCustomer.contact_id).where(StripeCustomer.customer_id == text.strip())
    return select(Contact.id).where(
        or_(
            contains_text(Contact.display_name, text),
            contains_text(Contact.email, text),
            Contact.id.in_(by_customer),
        )
    )


def check_range(flt: Any, errors: dict[str, str]) -> None:
    """The common cross-field checks: dates and amounts the right way round."""
    if getattr(flt, "since", None) and getattr(flt, "until", None) and flt.since >= flt.until:
        errors["until"] = "must be after the start date"
    low, high = getattr(flt, "min_amount", None), getattr(flt, "max_amount", None)
    if low is not None and high is not None and Decimal(low.text) > Decimal(high.text):
        errors["max_amount"] = "must not be less than the minimum"


def month_range(flt: Any, errors: dict[str, str]) -> None:
    """``month=2026-11`` (the dashboard's links) means that calendar month (UTC)."""
    if not flt.month:
        return
    m = re.fullmatch(r"(\d{4})-(\d{2})", flt.month.strip())
    if not m or not 1 <= int(m.group(2)) <= 12 or not 1970 <= int(m.group(1)) <= 8999:
        errors["month"] = f"{flt.month!r} is not a month (use YYYY-MM)"
        flt.month = None
        return
    start = datetime(int(m.group(1)), int(m.group(2)), 1)
    flt.since, flt.until = start, (start + timedelta(days=32)).replace(day=1)
    flt.month = None


# -- contributions ---------------------------------------------------------------------------


@dataclass
class MoneyRecordFilter(Filter):
    """What the contributions and payments filters share: type, processor, dates, amounts, contact."""

    type: str | None = field(default=None, metadata={"choices": TYPES})
    ppid: int | None = processor_field()
    since: datetime | None = None
    until: datetime | None = field(default=None, metadata={"end": True})
    month: str | None = None
    min_amount: Amount | None = None
    max_amount: Amount | None = None
    currency: list[str] = field(default_factory=list)
    contact_id: int | None = None
    q: str | None = None

    def check(self, errors: dict[str, str]) -> None:
        month_range(self, errors)
        self.currency = [c.lower() for c in self.currency]
        check_range(self, errors)


@dataclass
class ContributionFilter(MoneyRecordFilter):
    LABELS: ClassVar[dict[str, str]] = {"since": "Received from", "until": "Received to (inclusive)"}

    status: list[str] = field(default_factory=list, metadata={"choices": CONTRIBUTION_STATUSES})
    recur_id: int | None = None
    trxn_id: str | None = None


# Newest first by when it was received (else recorded): the expression ``ix_contribution_when_id`` indexes.
CONTRIBUTION_KEY: list[KeyColumn] = [CONTRIBUTION_WHEN, Contribution.id]


def _contribution_key(c: Any) -> list:
    return [getattr(c, "receive_date", None) or c.created_at, c.id]


def money_record_conditions(flt: MoneyRecordFilter, model: Any, when: Any) -> list[Any]:
    """The conditions every money record list shares (contributions, payments): processor, the date range on
    the list's ``when`` (its sort key), the amount range read in each row's own currency, the currencies."""
    conds: list[Any] = []
    if flt.ppid is not None:
        conds.append(model.processor_id == flt.ppid)
    if flt.since:
        conds.append(when >= flt.since)
    if flt.until:
        conds.append(when < flt.until)
    money = amount_between(model.amount, model.currency, flt.min_amount, flt.max_amount)
    if money is not None:
        conds.append(money)
    if flt.currency:
        conds.append(func.lower(model.currency).in_(flt.currency))
    return conds


def contribution_query(flt: ContributionFilter, *, with_status: bool = True) -> Select:
    """The contributions matching ``flt`` (no order, no paging); joins nothing, so callers may."""
    q = select(Contribution)
    if with_status and flt.status:
        q = q.where(Contribution.status.in_(flt.status))
    if flt.type == "one-off":
        q = q.where(Contribution.recur_id.is_(None))
    elif flt.type == "recurring":
        q = q.where(Contribution.recur_id.is_not(None))
    q = q.where(*money_record_conditions(flt, Contribution, CONTRIBUTION_WHEN))
    if flt.contact_id is not None:
        q = q.where(Contribution.contact_id == flt.contact_id)
    if flt.recur_id is not None:
        q = q.where(Contribution.recur_id == flt.recur_id)
    if flt.trxn_id:
        t = flt.trxn_id.strip()
        q = q.where(
            or_(
                Contribution.trxn_id == t,
                Contribution.invoice_id == t,
                Contribution.payment_intent_id == t,
                Contribution.id.in_(select(Payment.contribution_id).where(Payment.trxn_id == t)),
            )
        )
    if flt.q:
        text = flt.q.strip()
        q = q.where(
            or_(
                Contribution.contact_id.in_(contacts_matching(text)),
                Contribution.trxn_id == text,
                Contribution.invoice_id == text,
                Contribution.payment_intent_id == text,
                Contribution.customer_id == text,
                Contribution.recur_id.in_(
                    select(ContributionRecur.id).where(ContributionRecur.subscription_id == text)
                ),
            )
        )
    return q


def contribution_page(flt: ContributionFilter) -> Page:
    q = contribution_query(flt).options(selectinload(Contribution.contact), selectinload(Contribution.recur))
    return keyset_page(q, CONTRIBUTION_KEY, flt, key_of=_contribution_key)


def contribution_status_counts(flt: ContributionFilter) -> dict[str, int]:
    """How many contributions of each status match the filter (whatever its own status choice), each
    counted up to ``listing.COUNT_CAP`` ("10,000+")."""
    return capped_counts(
        contribution_query(flt, with_status=False),
        Contribution.status,
        Contribution.id,
        CONTRIBUTION_STATUSES,
    )


def contribution_totals(flt: ContributionFilter) -> list[MoneyTotal]:
    """Completed money per currency of what the filter matches (completed and refunded contributions, so
    amount - fees - refunded = net), and the failed ones apart; one query. Pending and cancelled ones count
    in neither."""
    return money_totals(
        contribution_query(flt),
        status="status",
        counted=DONE,
        failed=(FAILED,),
        fee="fee_amount",
        net="net_amount",
        refunded="refunded_amount",
    )


def contribution_summary(flt: ContributionFilter) -> Summary:
    """``contribution_totals`` as the page shows them: exact for a narrow filter, else computed at most once a
    minute (``listing.summary``)."""
    return summary("contributions", flt, lambda: contribution_totals(flt), contribution_query(flt))


_CONTRIBUTION_COLUMNS = (
    Contribution.id,
    Contribution.receive_date,
    Contribution.created_at,
    Contribution.status,
    Contribution.amount,
    Contribution.currency,
    Contribution.fee_amount,
    Contribution.net_amount,
    Contribution.refunded_amount,
    Contribution.contact_id,
    Contact.display_name.label("contact"),
    Contact.email.label("email"),
    Contribution.trxn_id,
    Contribution.invoice_id,
    Contribution.payment_intent_id,
    Contribution.customer_id,
    Contribution.recur_id,
    ContributionRecur.subscription_id,
    Contribution.processor_id,
    Contribution.source,
    Contribution.description,
    Contribution.failure_message,
    Contribution.receipt_sent_at,
)


def contribution_rows(flt: ContributionFilter, limit: int | None = None) -> Iterator[dict[str, Any]]:
    """Every contribution the filter matches, in page order, as plain dicts (CLI and CSV)."""
    q = (
        contribution_query(flt)
        .with_only_columns(*_CONTRIBUTION_COLUMNS)
        .outerjoin(Contact, Contact.id == Contribution.contact_id)
        .outerjoin(ContributionRecur, ContributionRecur.id == Contribution.recur_id)
    )
    rows = (r for chunk in walk(q, CONTRIBUTION_KEY, flt, key_of=_contribution_key) for r in chunk)
    yield from (contribution_dict(r) for r in islice(rows, limit))


def contribution_dict(c: Any) -> dict[str, Any]:
    """A contribution (row of ``_CONTRIBUTION_COLUMNS``, or the model) as JSON-able values."""
    contact = getattr(c, "contact", None)
    if isinstance(contact, Contact):
        name, email = contact.display_name, contact.email
    else:
        name, email = contact, getattr(c, "email", None)
    sub = getattr(c, "subscription_id", None)
    if sub is None and isinstance(getattr(c, "recur", None), ContributionRecur):
        sub = c.recur.subscription_id
    return {
        "id": c.id,
        "receive_date": _iso(c.receive_date),
        "status": c.status,
        "type": "recurring" if c.recur_id else "one-off",
        "amount": c.amount,
        "currency": c.currency,
        "display_amount": format_money(c.amount, c.currency),
        "fee_amount": c.fee_amount,
        "net_amount": c.net_amount,
        "refunded_amount": c.refunded_amount,
        "contact_id": c.contact_id,
        "contact": name,
        "email": email,
        "trxn_id": c.trxn_id,
        "invoice_id": c.invoice_id,
        "payment_intent_id": c.payment_intent_id,
        "customer_id": c.customer_id,
        "recur_id": c.recur_id,
        "subscription_id": sub,
        "processor_id": c.processor_id,
        "source": c.source,
        "description": c.description,
        "failure_message": c.failure_message,
        "receipt_sent_at": _iso(c.receipt_sent_at),
    }


CONTRIBUTION_CSV = (
    "id",
    "receive_date",
    "status",
    "type",
    "amount",
    "currency",
    "fee",
    "net",
    "refunded",
    "contact_id",
    "contact",
    "email",
    "trxn_id",
    "invoice_id",
    "payment_intent_id",
    "customer_id",
    "subscription_id",
    "recur_id",
    "processor_id",
    "source",
    "description",
    "failure_message",
)


def contribution_csv_row(d: dict[str, Any]) -> list[Any]:
    cur = d["currency"]
    money = {
        "amount": to_major(d["amount"], cur),
        "fee": to_major(d["fee_amount"], cur),
        "net": to_major(d["net_amount"], cur),
        "refunded": to_major(d["refunded_amount"], cur),
    }
    return [money[c] if c in money else d.get(c) for c in CONTRIBUTION_CSV]


def find_contribution(contribution_id: int | str) -> Contribution | None:
    pk = parse_id(contribution_id)
    return db.session.get(Contribution, pk) if pk is not None else None


def intents_of(c: Contribution) -> list[StripePaymentIntent]:
    """The payment intents that paid (or tried to pay) a contribution."""
    conds = [StripePaymentIntent.contribution_id == c.id]
    if c.payment_intent_id:
        conds.append(StripePaymentIntent.stripe_intent_id == c.payment_intent_id)
    return list(
        db.session.scalars(select(StripePaymentIntent).where(or_(*conds)).order_by(StripePaymentIntent.id))
    )


def events_of(c: Contribution, limit: int = 50) -> list[StripeEvent]:
    """The stored Stripe events about a contribution's invoice, intent or charges, newest first."""
    conds = []
    if c.invoice_id:
        conds.append(StripeEvent.invoice_id == c.invoice_id)
    if c.payment_intent_id:
        conds.append(StripeEvent.payment_intent_id == c.payment_intent_id)
    charges = {p.charge_id for p in c.payments if p.charge_id} | ({c.trxn_id} if c.trxn_id else set())
    if charges:
        conds.append(StripeEvent.charge_id.in_(sorted(charges)))
    if not conds:
        return []
    return list(
        db.session.scalars(
            select(StripeEvent)
            .where(StripeEvent.processor_id == c.processor_id, or_(*conds))
            .order_by(StripeEvent.created.desc(), StripeEvent.id.desc())
            .limit(limit)
        )
    )


# -- payments --------------------------------------------------------------------------------


@dataclass
class PaymentFilter(MoneyRecordFilter):
    LABELS: ClassVar[dict[str, str]] = {"since": "Paid from", "until": "Paid to (inclusive)"}

    kind: str | None = field(default=None, metadata={"choices": PAYMENT_KINDS})
    status: list[str] = field(default_factory=list, metadata={"choices": PAYMENT_STATUSES})
    contribution_id: int | None = None
    charge: str | None = field(default=None, metadata={"stripe_id": "charge"})


PAYMENT_KEY: list[KeyColumn] = [PAYMENT_WHEN, Payment.id]


def _payment_key(p: Any) -> list:
    return [getattr(p, "payment_date", None) or p.created_at, p.id]


def payment_query(flt: PaymentFilter, *, with_status: bool = True) -> Select:
    """The payments matching ``flt`` (no order, no paging); joins nothing, so callers may."""
    q = select(Payment)
    if flt.kind == "charge":
        q = q.where(Payment.refund_id.is_(None))
    elif flt.kind == "refund":
        q = q.where(Payment.refund_id.is_not(None))
    if with_status and flt.status:
        q = q.where(Payment.status.in_(flt.status))
    if flt.type:
        recurring = select(Contribution.id).where(Contribution.recur_id.is_not(None))
        q = q.where(
            Payment.contribution_id.in_(recurring)
            if flt.type == "recurring"
            else Payment.contribution_id.not_in(recurring)
        )
    q = q.where(*money_record_conditions(flt, Payment, PAYMENT_WHEN))
    if flt.contact_id is not None:
        q = q.where(
            Payment.contribution_id.in_(
                select(Contribution.id).where(Contribution.contact_id == flt.contact_id)
            )
        )
    if flt.contribution_id is not None:
        q = q.where(Payment.contribution_id == flt.contribution_id)
    if flt.charge:
        q = q.where(Payment.charge_id == flt.charge.strip())
    if flt.q:
        text = flt.q.strip()
        by_contact = select(Contribution.id).where(Contribution.contact_id.in_(contacts_matching(text)))
        q = q.where(
            or_(Payment.contribution_id.in_(by_contact), Payment.trxn_id == text, Payment.charge_id == text)
        )
    return q


def payment_page(flt: PaymentFilter) -> Page:
    q = payment_query(flt).options(selectinload(Payment.contribution).selectinload(Contribution.contact))
    return keyset_page(q, PAYMENT_KEY, flt, key_of=_payment_key)


def payment_totals(flt: PaymentFilter) -> list[MoneyTotal]:
    """Count, amount, fee and net per currency of what the filter matches (refunds count negative)."""
    return money_totals(
        payment_query(flt),
        fee="fee",
        net="net",
        status="status",
        counted=(COMPLETED, REFUNDED, CANCELLED),
        failed=(FAILED,),
    )


def payment_summary(flt: PaymentFilter) -> Summary:
    """``payment_totals`` as the page shows them (``listing.summary``)."""
    return summary("payments", flt, lambda: payment_totals(flt), payment_query(flt))


def payment_status_counts(flt: PaymentFilter) -> dict[str, int]:
    """How many payments of each status match the rest of the filter, each counted up to ``listing.COUNT_CAP``."""
    return capped_counts(payment_query(flt, with_status=False), Payment.status, Payment.id, PAYMENT_STATUSES)


_PAYMENT_COLUMNS = (
    Payment.id,
    Payment.payment_date,
    Payment.created_at,
    Payment.status,
    Payment.amount,
    Payment.fee,
    Payment.net,
    Payment.currency,
    Payment.trxn_id,
    Payment.charge_id,
    Payment.refund_id,
    Payment.contribution_id,
    Payment.processor_id,
    Contribution.contact_id,
    Contact.display_name.label("contact"),
    Contact.email.label("email"),
    Contribution.recur_id,
    Contribution.invoice_id,
    Contribution.status.label("contribution_status"),
)


def payment_rows(flt: PaymentFilter, limit: int | None = None) -> Iterator[dict[str, Any]]:
    """Every payment the filter matches, in page order, as plain dicts (CLI and CSV)."""
    q = (
        payment_query(flt)
        .with_only_columns(*_PAYMENT_COLUMNS)
        .join(Contribution, Contribution.id == Payment.contribution_id)
        .outerjoin(Contact, Contact.id == Contribution.contact_id)
    )
    rows = (r for chunk in walk(q, PAYMENT_KEY, flt, key_of=_payment_key) for r in chunk)
    yield from (payment_dict(r) for r in islice(rows, limit))


def payment_dict(p: Any) -> dict[str, Any]:
    """A payment (row of ``_PAYMENT_COLUMNS``, or the model) as JSON-able values."""
    c = getattr(p, "contribution", None)
    contribution = c if isinstance(c, Contribution) else None
    contact = contribution.contact if contribution is not None else None
    return {
        "id": p.id,
        "payment_date": _iso(p.payment_date),
        "kind": "refund" if p.refund_id else "charge",
        "status": p.status,
        "amount": p.amount,
        "fee": p.fee,
        "net": p.net,
        "currency": p.currency,
        "display_amount": format_money(p.amount, p.currency),
        "trxn_id": p.trxn_id,
        "charge_id": p.charge_id,
        "refund_id": p.refund_id,
        "contribution_id": p.contribution_id,
        "processor_id": p.processor_id,
        "contact_id": contribution.contact_id if contribution else getattr(p, "contact_id", None),
        "contact": contact.display_name if contact else getattr(p, "contact", None),
        "email": contact.email if contact else getattr(p, "email", None),
        "type": "recurring"
        if (contribution.recur_id if contribution else getattr(p, "recur_id", None))
        else "one-off",
        "invoice_id": contribution.invoice_id if contribution else getattr(p, "invoice_id", None),
    }


PAYMENT_CSV = (
    "id",
    "payment_date",
    "kind",
    "status",
    "amount",
    "fee",
    "net",
    "currency",
    "trxn_id",
    "charge_id",
    "refund_id",
    "contribution_id",
    "type",
    "invoice_id",
    "contact_id",
    "contact",
    "email",
    "processor_id",
)


def payment_csv_row(d: dict[str, Any]) -> list[Any]:
    cur = d["currency"]
    money = {
        "amount": to_major(d["amount"], cur),
        "fee": to_major(d["fee"], cur),
        "net": to_major(d["net"], cur),
    }
    return [money[c] if c in money else d.get(c) for c in PAYMENT_CSV]


# -- intents and events (the CLI's ``intents list`` and ``events list``) -----------------------


def event_dict(e: StripeEvent, raw: bool = False) -> dict[str, Any]:
    out = {
        "id": e.id,
        "event_id": e.event_id,
        "type": e.type,
        "created": e.created,
        "status": e.status,
        "status_reason": e.status_reason,
        "last_error": e.last_error,
        "attempts": e.attempts,
        "source": e.source,
        "processor_id": e.processor_id,
        "customer_id": e.customer_id,
        "subscription_id": e.subscription_id,
        "invoice_id": e.invoice_id,
        "charge_id": e.charge_id,
        "payment_intent_id": e.payment_intent_id,
        "received_at": _iso(e.received_at),
        "processed_at": _iso(e.processed_at),
    }
    if raw:
        import json

        try:
            out["raw"] = json.loads(e.raw)
        except (TypeError, ValueError, RecursionError):  # stored before the door checked bodies: report it
            out["raw"] = None
            out["raw_error"] = "the stored body is not valid JSON"
    return out
