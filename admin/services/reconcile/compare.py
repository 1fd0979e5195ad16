"""One comparator for every kind of Stripe object reconciled: charges, refunds and paid invoices.

Each kind is a row of :data:`SIDES` (how Stripe's object reads: paid or not, its amount and status;
how paydesk's record reads: counted as paid or not, its amount and state; where paydesk keeps it);
:func:`compare_one` walks the same ladder for all of them. A row is *in step*, or has one problem:

* ``absent``: paydesk counts it as paid, Stripe has no such object (fix: cancel the local record);
* ``status``: Stripe has it, but one side counts it as paid and the other does not;
* ``missing``: Stripe has it paid, paydesk has no record (fix: fetch it from Stripe);
* ``amount``: both count it as paid, the amounts differ (fix: fetch).

Neither side counting it as paid (a failed charge nobody recorded) is no row at all.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import select

from admin.extensions import db
from admin.models import COMPLETED, Contribution, Payment, PaymentProcessor
from admin.money import format_money
from admin.services.core.stripe_reader import StripeReader
from admin.services.reconcile.filter import PROBLEM_LABELS
from admin.services.records.contributions import DONE, PAYMENT_REFUNDED, REFUND_COUNTED
from admin.stripe_gateway import GatewayError
from admin.stripe_shapes import sid
from admin.timeutil import from_unix, to_unix

Record = Payment | Contribution


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
        return {
            "object": self.object,
            "id": self.stripe_id,
            "created": self.created.isoformat(timespec="seconds") if self.created else None,
            "currency": self.currency,
            "stripe_amount": self.stripe_amount,
            "stripe_status": self.stripe_status,
            "local_amount": self.local_amount,
            "local_status": self.local_status,
            "payment_id": self.payment_id,
            "contribution_id": self.contribution_id,
            "problem": self.problem or "in step",
            "detail": self.detail,
            "fix": self.remedy,
        }


def row_key(r: Row) -> tuple[int, str]:
    """Rows are shown newest first."""
    return (to_unix(r.created) if r.created else 0, r.key)


# -- the table ---------------------------------------------------------------------------------


def _charge_status(ch: dict) -> str:
    status = ch.get("status") or "?"
    return "uncaptured" if ch.get("captured") is False and status == "succeeded" else status


def _charge_amount(ch: dict, paid: bool) -> int:
    return int(ch.get("amount_captured") or ch.get("amount") or 0) if paid else int(ch.get("amount") or 0)


def _payment_state(p: Payment) -> str:
    c_status = p.contribution.status if p.contribution is not None else "?"
    return f"{p.status}, its contribution {c_status}"


def _payment_fields(p: Payment) -> dict[str, Any]:
    return {"payment_id": p.id, "contribution_id": p.contribution_id}


@dataclass(frozen=True)
class Side:
    """How one kind of Stripe object and paydesk's record of it are read and compared."""

    object: str  # charge | refund | invoice
    resource: str  # Stripe's list and retrieve endpoint
    prefixes: tuple[str, ...]  # of its ids
    noun: str  # paydesk's record of it, in messages
    paid_word: str  # what Stripe's object is when it counts: "paid", "refunded"
    server_filter: bool  # Stripe's list of it filters by ``created`` (localstripe may still refuse)
    sign: int  # refunds are negative payments in paydesk
    # Stripe's side
    stripe_status: Callable[[dict], str]
    stripe_paid: Callable[[str], bool]  # of the status
    stripe_amount: Callable[[dict, bool], int]  # (object, paid), before the sign
    links: Callable[[dict], dict[str, str | None]]
    unpaid_remedy: str  # Stripe has it unpaid, paydesk counts it: whose side is right
    # paydesk's side
    model: type[Contribution] | type[Payment]
    key_column: Any  # where the Stripe id is kept
    date_column: Any  # what the period bounds
    counted_where: Callable[[], list]  # paydesk counts it as paid (SQL)
    counted: Callable[[Any], bool]  # the same, for a record
    in_step: Callable[[Any], bool]  # paydesk's state agrees with a paid object
    state: Callable[[Any], str]  # paydesk's state, in messages
    phrase: str  # "a completed payment of {money}"
    local_fields: Callable[[Any], dict[str, Any]]
    local_date: Callable[[Any], datetime | None]


SIDES: dict[str, Side] = {
    s.object: s
    for s in (
        Side(
            "charge",
            "charges",
            ("ch_", "py_"),
            "payment",
            "paid",
            True,
            1,
            stripe_status=_charge_status,
            stripe_paid=lambda s: s == "succeeded",
            stripe_amount=_charge_amount,
            links=lambda o: {
                "customer_id": sid(o.get("customer")),
                "intent_id": sid(o.get("payment_intent")),
            },
            unpaid_remedy="cancel",
            model=Payment,
            key_column=Payment.trxn_id,
            date_column=Payment.payment_date,
            counted_where=lambda: [
                Payment.refund_id.is_(None),
                Payment.amount > 0,
                Payment.status == COMPLETED,
            ],
            counted=lambda p: p.status == COMPLETED,
            in_step=lambda p: (
                p.status == COMPLETED and (p.contribution is None or p.contribution.status in DONE)
            ),
            state=_payment_state,
            phrase="a completed payment of {money}",
            local_fields=_payment_fields,
            local_date=lambda p: p.payment_date,
        ),
        Side(
            "refund",
            "refunds",
            ("re_", "pyr_"),
            "refund",
            "refunded",
            False,
            -1,
            stripe_status=lambda r: r.get("status") or "?",
            stripe_paid=lambda s: s in REFUND_COUNTED,
            stripe_amount=lambda r, _paid: int(r.get("amount") or 0),
            links=lambda o: {"charge_id": sid(o.get("charge"))},
            unpaid_remedy="fetch",
            model=Payment,
            key_column=Payment.trxn_id,
            date_column=Payment.payment_date,
            counted_where=lambda: [Payment.refund_id.is_not(None), Payment.status == PAYMENT_REFUNDED],
            counted=lambda p: p.status == PAYMENT_REFUNDED,
            in_step=lambda p: p.status == PAYMENT_REFUNDED,
            state=lambda p: p.status,
            phrase="a refund of {money}",
            local_fields=lambda p: {**_payment_fields(p), "charge_id": p.charge_id},
            local_date=lambda p: p.payment_date,
        ),
        Side(
            "invoice",
            "invoices",
            ("in_",),
            "contribution",
            "paid",
            False,
            1,
            stripe_status=lambda i: i.get("status") or "?",
            stripe_paid=lambda s: s == "paid",
            stripe_amount=lambda i, paid: (
                int(i.get("amount_paid") or 0) if paid else int(i.get("amount_due") or 0)
            ),
            links=lambda o: {"customer_id": sid(o.get("customer"))},
            unpaid_remedy="cancel",
            model=Contribution,
            key_column=Contribution.invoice_id,
            date_column=Contribution.receive_date,
            counted_where=lambda: [Contribution.invoice_id.is_not(None), Contribution.status.in_(DONE)],
            counted=lambda c: c.status in DONE,
            in_step=lambda c: c.status in DONE,
            state=lambda c: c.status,
            phrase="a {status} contribution of {money}",
            local_fields=lambda c: {"contribution_id": c.id},
            local_date=lambda c: c.receive_date,
        ),
    )
}


def _money(amount: int | None, currency: str | None) -> str:
    return format_money(abs(amount), currency) if amount is not None else "nothing"


def compare_one(side: Side, found: dict | None, local: Any | None, stripe_id: str) -> Row | None:
    """Stripe's object (None: Stripe has none) next to paydesk's record of it (None: paydesk has none),
    as a row; None when neither counts it as paid (nothing to compare)."""
    row = Row(
        side.object,
        stripe_id,
        from_unix(found.get("created")) if found else side.local_date(local) if local is not None else None,
        ((found or {}).get("currency") or (getattr(local, "currency", None) or "")).lower(),
    )
    counted = local is not None and side.counted(local)
    if local is not None:
        row.local_amount, row.local_status = local.amount, local.status
        for name, value in side.local_fields(local).items():
            setattr(row, name, value)
    here = (
        side.phrase.format(
            status=str(getattr(local, "status", "")).lower(), money=_money(row.local_amount, row.currency)
        )
        if local is not None
        else ""
    )
    if found is None:
        if not counted:
            return None
        row.stripe_status, row.problem, row.remedy = "not in Stripe", "absent", "cancel"
        row.detail = f"paydesk has {here}; Stripe has no {side.object} {stripe_id}"
        return row
    for name, value in side.links(found).items():
        setattr(row, name, value or getattr(row, name))
    row.stripe_status = side.stripe_status(found)
    paid = side.stripe_paid(row.stripe_status)
    row.stripe_amount = side.sign * side.stripe_amount(found, paid)
    there = _money(row.stripe_amount, row.currency)
    if not paid:
        if not counted:
            return None  # a failed or uncaptured charge, an open invoice: no payment on either side
        row.problem, row.remedy = "status", side.unpaid_remedy
        row.detail = f"Stripe has the {side.object} as {row.stripe_status}; paydesk has {here}"
    elif local is None:
        row.problem, row.remedy = "missing", "fetch"
        row.detail = f"Stripe has {there} {side.paid_word}; paydesk has no {side.noun}"
    elif not side.in_step(local):
        row.problem, row.remedy = "status", "fetch"
        row.detail = f"Stripe has it {side.paid_word}; paydesk has the {side.noun} {side.state(local)}"
    elif local.amount != row.stripe_amount:
        row.problem, row.remedy = "amount", "fetch"
        row.detail = f"Stripe {there}, paydesk {_money(local.amount, row.currency)}"
    return row


# -- paydesk's side ----------------------------------------------------------------------------


def _chunks(ids: list[str], n: int = 500) -> Iterator[list[str]]:
    for i in range(0, len(ids), n):
        yield ids[i : i + n]


def local_records(side: Side, proc: PaymentProcessor, stripe_ids: list[str]) -> dict[str, Any]:
    """paydesk's records of these Stripe objects, by Stripe id."""
    found: dict[str, Any] = {}
    for chunk in _chunks(stripe_ids):
        for rec in db.session.scalars(
            select(side.model).where(side.model.processor_id == proc.id, side.key_column.in_(chunk))
        ):
            found[getattr(rec, side.key_column.key)] = rec
    return found


def counted_ids(side: Side, proc: PaymentProcessor, since: datetime, until: datetime) -> list[str]:
    """The Stripe ids of what paydesk counts as paid in the period (oldest first)."""
    return list(
        db.session.scalars(
            select(side.key_column)
            .where(
                side.model.processor_id == proc.id,
                *side.counted_where(),
                side.date_column >= since,
                side.date_column < until,
            )
            .order_by(side.date_column, side.model.id)
        )
    )


def compare_listed(side: Side, proc: PaymentProcessor, listed: list[dict]) -> list[Row]:
    """Rows for objects from Stripe's list, each next to paydesk's record."""
    local = local_records(side, proc, [o["id"] for o in listed])
    rows = (compare_one(side, o, local.get(o["id"]), o["id"]) for o in listed)
    return [r for r in rows if r is not None]


def retrieve(reader: StripeReader, side: Side, stripe_id: str) -> dict | None:
    """The object as Stripe has it now; None when Stripe has no such object."""
    try:
        return reader.get(side.resource, stripe_id)
    except GatewayError as err:
        if err.not_found:
            return None
        raise


def side_of(obj: str) -> Side:
    return SIDES[obj]
