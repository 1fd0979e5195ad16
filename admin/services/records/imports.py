"""Bringing into paydesk what exists in Stripe but not here (CiviCRM's import API).

- ``import_charge``: one charge by id, as a contribution and payment (on its invoice's
  contribution when it pays an invoice);
- ``import_subscription``: a subscription with all its invoices and charges: the recurring
  contribution, one contribution per invoice (``trxn_id`` = invoice id), one payment per
  charge (``trxn_id`` = charge id), the contact through the customer;
- ``import_customer``: a customer linked to its contact, matched by ``metadata.contact_id``
  (or the CiviCRM extension's ``civicrm_contact_id``), then by email, else created.

Each is idempotent (importing again creates and changes nothing unless Stripe's side changed)
and reuses the record mapping the webhook handlers use (``services/contributions``,
``recurring``, ``contacts``, ``charges``). Imports of many objects are jobs
(``services/record_jobs``); asked for by id, an import says what Stripe said when the object
is missing. Staff imports write an audit entry in the transaction that changes the records.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import select

from admin.dbutil import immediate, lock_objects, parse_id
from admin.errors import ServiceError
from admin.extensions import db
from admin.models import Contact, Contribution, ContributionRecur, Payment, PaymentProcessor, StripeCustomer
from admin.services.core import audit
from admin.services.core.stripe_reader import StripeReader, read_then_write
from admin.services.records.charges import record_charge
from admin.services.records.contacts import CustomerMatcher, linked_contact
from admin.services.records.contributions import (
    cancel,
    read_invoice,
    record_invoice_failed,
    record_invoice_finalized,
    record_invoice_paid,
)
from admin.services.records.recurring import sync_subscription
from admin.services.records.subscriptions import compare, invoice_rows, store_check, subscription_invoices
from admin.stripe_gateway import GatewayError
from admin.stripe_shapes import sid, stripe_id_problem


def import_charge(
    processor: PaymentProcessor, charge_id: str, *, contact_id: int | None = None, no_receipt: bool = True
) -> Contribution:
    """Record one Stripe charge as it is now (CiviCRM's importcharge). Idempotent: importing it
    again changes nothing unless Stripe's side changed. Commits."""
    charge_id = (charge_id or "").strip()
    problem = stripe_id_problem(charge_id, "charge")
    if problem:
        raise ServiceError(problem, field="charge")
    contact = None
    if contact_id is not None:
        contact = db.session.get(Contact, parse_id(contact_id)) if parse_id(contact_id) else None
        if contact is None:
            raise ServiceError(f"no contact {contact_id}", field="contact_id")
    reader = StripeReader(processor, fresh=True)

    def write(charge: dict) -> tuple[Contribution, str | None]:
        c, note = record_charge(reader, processor, charge, no_receipt=no_receipt, contact=contact)
        if c is None:
            raise ServiceError(f"nothing to import for {charge_id}: {note}")
        return c, note

    c, _ = read_then_write(
        reader,
        "import.charge",
        ("charge", charge_id),
        lambda: reader.get("charges", charge_id),
        write,
        audited=lambda done: {
            "object_type": "contribution",
            "object_id": str(done[0].id),
            "parameters": {"charge": charge_id, "contact_id": contact_id},
            "message": done[1],
        },
    )
    return c


# -- subscriptions ----------------------------------------------------------------------------

CREATED, UPDATED, UNCHANGED = "created", "updated", "unchanged"


def _subscription_state(processor_id: int, subscription_id: str) -> tuple | None:
    """What an import may change for one subscription, to tell "created", "updated" and "unchanged"."""
    recur = db.session.scalar(
        select(ContributionRecur).where(
            ContributionRecur.processor_id == processor_id,
            ContributionRecur.subscription_id == subscription_id,
        )
    )
    if recur is None:
        return None
    contributions = db.session.execute(
        select(
            Contribution.id,
            Contribution.status,
            Contribution.amount,
            Contribution.trxn_id,
            Contribution.contact_id,
            Contribution.fee_amount,
            Contribution.net_amount,
            Contribution.refunded_amount,
        )
        .where(Contribution.recur_id == recur.id)
        .order_by(Contribution.id)
    ).all()
    payments = db.session.execute(
        select(Payment.id, Payment.amount, Payment.status)
        .join(Contribution)
        .where(Contribution.recur_id == recur.id)
        .order_by(Payment.id)
    ).all()
    return (
        (
            recur.status,
            recur.amount,
            recur.currency,
            recur.interval,
            recur.interval_count,
            recur.stripe_status,
            recur.contact_id,
            recur.customer_id,
            recur.next_sched_date,
            recur.cancel_date,
        ),
        tuple(map(tuple, contributions)),
        tuple(map(tuple, payments)),
    )


def _stamp(sub: dict) -> int:
    """When Stripe last changed this subscription, as far as the object tells (deterministic, so
    importing the same state twice writes the same value)."""
    times = [sub.get(k) for k in ("created", "start_date", "current_period_start", "canceled_at", "ended_at")]
    for item in (sub.get("items") or {}).get("data") or []:
        times.append(item.get("current_period_start"))
    return max([int(t) for t in times if isinstance(t, int | float)] or [0])


def _record_invoice(reader: StripeReader, processor: PaymentProcessor, inv: dict) -> None:
    """One invoice as the invoice.* handlers would record it (receipts never sent for imports)."""
    status = inv.get("status")
    if status == "paid":
        record_invoice_paid(reader, processor, inv, no_receipt=True)
    elif not inv.get("amount_due"):
        return  # nothing to collect: no contribution (as invoice.finalized does)
    elif status in ("open", "uncollectible") and int(inv.get("attempt_count") or 0) > 0:
        record_invoice_failed(reader, processor, inv)
    elif status == "open":
        record_invoice_finalized(reader, processor, inv)
    elif status == "void":
        c = db.session.scalar(
            select(Contribution).where(
                Contribution.processor_id == processor.id, Contribution.invoice_id == inv["id"]
            )
        )
        if c is not None:
            cancel(c, "invoice voided in Stripe")


@dataclass
class Imported:
    subscription_id: str
    outcome: str  # created | updated | unchanged
    recur: ContributionRecur
    differences: list[dict]  # what still differs from Stripe afterwards (normally nothing)


def fetch_subscription(reader: StripeReader, processor: PaymentProcessor, sub: dict) -> list[dict]:
    """Read from Stripe what importing or comparing ``sub`` needs, before any write: its invoices, each
    one's charge with its balance transaction and refunds, and its customer when no contact is linked to
    it yet. Returns the invoices (oldest first)."""
    invoices = subscription_invoices(reader, sub["id"])
    customer_id = sid(sub.get("customer"))
    if customer_id and linked_contact(processor.id, customer_id) is None:
        try:
            reader.get("customers", customer_id)
        except GatewayError as err:
            if not err.not_found:
                raise
    for inv in invoices:
        read_invoice(reader, processor.id, inv)
    return invoices


def import_subscription(
    reader: StripeReader, processor: PaymentProcessor, sub: dict, invoices: list[dict] | None = None
) -> Imported:
    """Record a subscription (as fetched or listed) with all its invoices (as ``fetch_subscription``
    gives them; read here when not given) and charges, then compare the two sides and keep the result.
    Audited when it changed anything. Does not commit."""
    if invoices is None:
        invoices = subscription_invoices(reader, sub["id"])
    lock_objects([sub["id"]])
    before = _subscription_state(processor.id, sub["id"])
    recur = sync_subscription(reader, processor, sub, stamp=_stamp(sub))
    for inv in invoices:
        _record_invoice(reader, processor, inv)
    differences = compare(sub, recur, invoice_rows(reader, processor, invoices))
    store_check(processor.id, sub["id"], sub, differences)
    after = _subscription_state(processor.id, sub["id"])
    outcome = CREATED if before is None else UPDATED if before != after else UNCHANGED
    if outcome != UNCHANGED:
        audit.record(
            "import.subscription",
            object_type="subscription",
            object_id=sub["id"],
            processor_id=processor.id,
            parameters={"recur_id": recur.id, "invoices": len(invoices)},
            message=outcome,
            commit=False,
        )
    return Imported(sub["id"], outcome, recur, differences)


def import_subscription_by_id(processor: PaymentProcessor, subscription_id: str) -> Imported:
    """CiviCRM's importsubscription: one subscription by id. Commits. A subscription Stripe does
    not have is a ``ServiceError`` carrying Stripe's message (and an audit entry)."""
    subscription_id = (subscription_id or "").strip()
    problem = stripe_id_problem(subscription_id, "subscription")
    if problem:
        raise ServiceError(problem, field="subscription")
    reader = StripeReader(processor)

    def read() -> tuple[dict, list[dict]]:
        sub = reader.get("subscriptions", subscription_id)
        return sub, fetch_subscription(reader, processor, sub)

    return read_then_write(
        reader,
        "import.subscription",
        ("subscription", subscription_id),
        read,
        lambda found: import_subscription(reader, processor, *found),
    )  # audits what changed


# -- customers --------------------------------------------------------------------------------


def import_customer_objects(
    processor: PaymentProcessor, customers: list[dict]
) -> list[tuple[Contact | None, str]]:
    """Link customers (as listed or fetched) to their contacts; for each, the contact and how:
    "linked" (it was already: nothing changes), "metadata", "email", "created", or "deleted"
    (Stripe has deleted it; an existing link is marked so). Each change is audited. One
    flush for the lot. Does not commit."""
    lock_objects([c["id"] for c in customers])
    matcher = CustomerMatcher(processor, [c for c in customers if not c.get("deleted")])
    out = [
        (_customer_gone(processor, c["id"]), "deleted") if c.get("deleted") else matcher.link(c)
        for c in customers
    ]
    db.session.flush()
    for customer, (contact, how) in zip(customers, out, strict=True):
        if how not in ("linked", "deleted") and contact is not None:  # only a deleted one has no contact
            audit.record(
                "import.customer",
                object_type="contact",
                object_id=str(contact.id),
                processor_id=processor.id,
                parameters={"customer": customer["id"], "matched": how},
                commit=False,
            )
    return out


def _customer_gone(processor: PaymentProcessor, customer_id: str) -> Contact | None:
    link = db.session.scalar(
        select(StripeCustomer).where(
            StripeCustomer.processor_id == processor.id, StripeCustomer.customer_id == customer_id
        )
    )
    if link is None:
        return None
    if not link.deleted:
        link.deleted = True
        audit.record(
            "import.customer",
            object_type="contact",
            object_id=str(link.contact_id),
            processor_id=processor.id,
            parameters={"customer": customer_id},
            message="deleted in Stripe: link marked deleted",
            commit=False,
        )
    return link.contact


def import_customer(processor: PaymentProcessor, customer_id: str) -> tuple[Contact, str]:
    """CiviCRM's importcustomer: one customer by id. Commits. A customer Stripe does not have (or
    has deleted) is a ``ServiceError`` with Stripe's message; paydesk's link to it, if any, is
    marked deleted first."""
    customer_id = (customer_id or "").strip()
    problem = stripe_id_problem(customer_id, "customer")
    if problem:
        raise ServiceError(problem, field="customer")
    reader = StripeReader(processor)

    def gone(err: GatewayError) -> None:
        if err.not_found:
            immediate()
            _customer_gone(processor, customer_id)
            db.session.commit()

    [(contact, how)] = read_then_write(
        reader,
        "import.customer",
        ("customer", customer_id),
        lambda: reader.get("customers", customer_id),
        lambda customer: import_customer_objects(processor, [customer]),
        refused=gone,
    )
    if how == "deleted" or contact is None:  # only a deleted one has no contact
        raise ServiceError(f"Stripe: customer {customer_id} has been deleted")
    return contact, how
