"""Contacts and their Stripe customers (the CiviCRM StripeCustomer link): matching a customer
to a contact, the ``/customers`` list (``ContactFilter``), a contact's page, and changing a
contact's name or email."""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from itertools import islice
from typing import Any, ClassVar

from sqlalchemy import Select, bindparam, case, func, or_, select
from sqlalchemy.orm import selectinload

from admin.dbutil import immediate, parse_id
from admin.errors import ServiceError, check_text
from admin.extensions import db
from admin.listing import Filter, Page, keyset_page, processor_field, walk
from admin.models import (
    FAILED,
    Contact,
    Contribution,
    ContributionRecur,
    Payment,
    PaymentProcessor,
    StripeCustomer,
    StripeEvent,
    StripePaymentIntent,
)
from admin.services.core import audit
from admin.services.core.stripe_reader import StripeReader
from admin.services.records.common import DONE, check_range, contacts_matching
from admin.services.records.customer_sync import request_contact_sync
from admin.stripe_gateway import GatewayError

# built once (every payment event asks): the contact of a (processor, customer) link, one query
_LINKED = (
    select(Contact)
    .join(StripeCustomer, StripeCustomer.contact_id == Contact.id)
    .where(
        StripeCustomer.processor_id == bindparam("processor_id"),
        StripeCustomer.customer_id == bindparam("customer_id"),
    )
)


def linked_contact(processor_id: int, customer_id: str | None) -> Contact | None:
    if not customer_id:
        return None
    return db.session.scalar(_LINKED, {"processor_id": processor_id, "customer_id": customer_id})


def find_by_email(email: str | None) -> Contact | None:
    if not email:
        return None
    return db.session.scalar(
        select(Contact)
        .where(func.lower(Contact.email) == email.strip().lower(), Contact.is_deleted.is_(False))
        .order_by(Contact.id)
        .limit(1)
    )


def new_contact(
    name: str | None, email: str | None, postal_code: str | None = None, source: str = "stripe"
) -> Contact:
    contact = Contact(
        display_name=name or email or "Anonymous donor", email=email, postal_code=postal_code, source=source
    )
    db.session.add(contact)
    return contact


def contact_for_details(
    name: str | None, email: str | None, postal_code: str | None = None, source: str = "stripe"
) -> Contact:
    """The contact with this email (CiviCRM's default dedupe rule), or a new one."""
    contact = find_by_email(email)
    if contact is None:
        contact = new_contact(name, email, postal_code, source)
        db.session.flush()
    elif name and not contact.display_name:
        contact.display_name = name
    return contact


# Customer metadata keys that name the contact: paydesk's own, and the CiviCRM extension's.
CONTACT_ID_KEYS = ("contact_id", "civicrm_contact_id")


def _ids_named(customer: dict) -> list[int]:
    meta = customer.get("metadata") or {}
    ids = [parse_id(str(meta.get(key) or "")) for key in CONTACT_ID_KEYS]
    return [i for i in ids if i is not None]


def contact_named_by(customer: dict) -> Contact | None:
    """The contact a Stripe customer's metadata names (``contact_id``, or CiviCRM's
    ``civicrm_contact_id``), when paydesk has it."""
    for contact_id in _ids_named(customer):
        contact = db.session.get(Contact, contact_id)
        if contact is not None and not contact.is_deleted:
            return contact
    return None


_WITH_EMAILS = (  # built once: the live contacts with any of these emails (in any case), oldest first
    select(Contact)
    .where(func.lower(Contact.email).in_(bindparam("emails", expanding=True)), Contact.is_deleted.is_(False))
    .order_by(Contact.id)
)


class CustomerMatcher:
    """Links Stripe customers to contacts (CiviCRM's rule): a customer linked already stays so;
    else the contact its metadata names (``metadata.contact_id`` or ``civicrm_contact_id``),
    else the contact with its email, else a new contact. One contact per customer (the
    (processor, customer) link is unique), and one new contact per email within a batch.

    Everything a batch needs is read up front in three queries, and written in one flush, so a
    page of 100 listed customers costs a handful of statements, not several per customer."""

    def __init__(self, processor: PaymentProcessor, customers: list[dict], *, unlinked: bool = False):
        """``unlinked``: the caller has just found none of ``customers`` linked (in this transaction)."""
        self.processor = processor
        ids = [c["id"] for c in customers]
        self.links = (
            {}
            if unlinked
            else {
                link.customer_id: link
                for link in db.session.scalars(
                    select(StripeCustomer)
                    .options(selectinload(StripeCustomer.contact))
                    .where(StripeCustomer.processor_id == processor.id, StripeCustomer.customer_id.in_(ids))
                )
            }
        )
        named = {i for c in customers for i in _ids_named(c)}
        self.by_id = (
            {
                c.id: c
                for c in db.session.scalars(
                    select(Contact).where(Contact.id.in_(named), Contact.is_deleted.is_(False))
                )
            }
            if named
            else {}
        )
        emails = {c["email"].strip().lower() for c in customers if c.get("email")}
        self.by_email: dict[str, Contact] = {}
        if emails:
            for contact in db.session.scalars(_WITH_EMAILS, {"emails": sorted(emails)}):
                self.by_email.setdefault(
                    (contact.email or "").strip().lower(), contact
                )  # matched: never None

    def link(self, customer: dict) -> tuple[Contact, str]:
        """The customer's contact and how: "linked" (already), "metadata", "email" or "created".
        Does not flush."""
        link = self.links.get(customer["id"])
        if link is not None:
            return link.contact, "linked"
        contact = next((self.by_id[i] for i in _ids_named(customer) if i in self.by_id), None)
        how = "metadata"
        email = (customer.get("email") or "").strip().lower()
        if contact is None and email in self.by_email:
            contact, how = self.by_email[email], "email"
        if contact is None:
            postal = (customer.get("address") or {}).get("postal_code")
            contact, how = new_contact(customer.get("name"), customer.get("email"), postal), "created"
            if email:
                self.by_email[email] = contact
        if customer.get("phone") and not contact.phone:
            contact.phone = customer["phone"]
        if customer.get("name") and not contact.display_name:
            contact.display_name = customer["name"]
        link = StripeCustomer(
            customer_id=customer["id"],
            contact=contact,
            processor_id=self.processor.id,
            deleted=bool(customer.get("deleted")),
        )
        db.session.add(link)
        self.links[customer["id"]] = link
        return contact, how


def link_customer(
    processor: PaymentProcessor, customer: dict, *, unlinked: bool = False
) -> tuple[Contact, str]:
    """Link one Stripe customer to its contact (see ``CustomerMatcher``; ``unlinked``: the caller has just
    found it unlinked); returns the contact and "linked" (it was already) or how it was matched ("metadata",
    "email", "created"). Does not flush: a new contact and link are inserted with the record that needs them."""
    return CustomerMatcher(processor, [customer], unlinked=unlinked).link(customer)


def contact_for_customer(
    reader: StripeReader, processor: PaymentProcessor, customer_id: str | None
) -> Contact | None:
    """The contact linked to a Stripe customer; links (or creates) one on first sight.

    A customer paydesk created carries ``metadata.contact_id``; otherwise the
    contact is matched by email, else created from the customer's details.
    """
    if not customer_id:
        return None
    contact = linked_contact(processor.id, customer_id)
    if contact is not None:
        return contact
    try:
        cust = reader.get("customers", customer_id)
    except GatewayError as err:
        if err.not_found:
            return None
        raise
    return link_customer(processor, cust, unlinked=True)[0]


def contact_for_charge(reader: StripeReader, processor: PaymentProcessor, charge: dict) -> Contact:
    """A one-off charge's contact: its customer's, else from its billing details."""
    from admin.stripe_shapes import sid

    contact = contact_for_customer(reader, processor, sid(charge.get("customer")))
    if contact is not None:
        return contact
    billing = charge.get("billing_details") or {}
    email = billing.get("email") or charge.get("receipt_email")
    return contact_for_details(billing.get("name"), email, (billing.get("address") or {}).get("postal_code"))


# -- the /customers list and the contact page --------------------------------------------------

LINKED = ("yes", "no", "any")


@dataclass
class ContactFilter(Filter):
    """Contacts, by default those linked to a Stripe customer (the ``/customers`` page)."""

    LABELS: ClassVar[dict[str, str]] = {
        "linked": "Stripe customer",
        "since": "Added from",
        "until": "Added to (inclusive)",
        "customer": "Stripe customer id",
    }

    linked: str = field(default="yes", metadata={"choices": LINKED})
    q: str | None = None
    ppid: int | None = processor_field()
    customer: str | None = field(default=None, metadata={"stripe_id": "customer"})
    since: datetime | None = None
    until: datetime | None = field(default=None, metadata={"end": True})

    def check(self, errors: dict[str, str]) -> None:
        check_range(self, errors)


def contact_query(flt: ContactFilter) -> Select:
    q = select(Contact).where(Contact.is_deleted.is_(False))
    links = select(StripeCustomer.contact_id)
    if flt.ppid is not None:
        links = links.where(StripeCustomer.processor_id == flt.ppid)
    if flt.linked == "yes":
        q = q.where(Contact.id.in_(links))
    elif flt.linked == "no":
        q = q.where(Contact.id.not_in(links))
    if flt.customer:
        q = q.where(
            Contact.id.in_(
                select(StripeCustomer.contact_id).where(StripeCustomer.customer_id == flt.customer.strip())
            )
        )
    if flt.q:
        q = q.where(Contact.id.in_(contacts_matching(flt.q)))
    if flt.since:
        q = q.where(Contact.created_at >= flt.since)
    if flt.until:
        q = q.where(Contact.created_at < flt.until)
    return q


def contact_page(flt: ContactFilter) -> Page:
    q = contact_query(flt).options(selectinload(Contact.stripe_customers))
    return keyset_page(q, [Contact.id], flt)


@dataclass
class Giving:
    """A contact's contributions at a glance: how many, the last, and per currency the money given (completed
    contributions less refunds: 0 when all of it was refunded or every gift failed) and the failed money apart."""

    count: int = 0
    last: datetime | None = None
    totals: dict[str, int] = field(default_factory=dict)
    failed: dict[str, int] = field(default_factory=dict)


def giving_of(contact_ids: list[int]) -> dict[int, Giving]:
    """``Giving`` for each contact on a page, in one grouped query."""
    out = {cid: Giving() for cid in contact_ids}
    if not contact_ids:
        return out
    when = func.coalesce(Contribution.receive_date, Contribution.created_at)
    done, failed = Contribution.status.in_(DONE), Contribution.status == FAILED
    rows = db.session.execute(
        select(
            Contribution.contact_id,
            func.lower(Contribution.currency),
            func.count(),
            func.max(when),
            func.sum(case((done, Contribution.amount - Contribution.refunded_amount), else_=0)),
            func.sum(case((failed, Contribution.amount), else_=0)),
        )
        .where(Contribution.contact_id.in_(contact_ids))
        .group_by(Contribution.contact_id, func.lower(Contribution.currency))
    )
    for cid, cur, n, last, given, lost in rows:
        g = out[cid]
        g.count += int(n)
        g.last = max(g.last, last) if g.last and last else (g.last or last)
        g.totals[cur] = int(given or 0)
        if lost:
            g.failed[cur] = int(lost)
    return out


def contact_dict(c: Contact) -> dict[str, Any]:
    return {
        "id": c.id,
        "display_name": c.display_name,
        "email": c.email,
        "phone": c.phone,
        "postal_code": c.postal_code,
        "source": c.source,
        "stripe_customer_ids": [s.customer_id for s in c.stripe_customers],
        "created_at": c.created_at.isoformat(timespec="seconds") if c.created_at else None,
    }


def contact_rows(flt: ContactFilter, limit: int | None = None) -> Iterator[dict[str, Any]]:
    """Every contact the filter matches, newest first, as dicts (the CLI)."""
    q = contact_query(flt).options(selectinload(Contact.stripe_customers))
    rows = (
        c
        for chunk in walk(q, [Contact.id], flt, key_of=lambda c: [c.id], scalars=True, chunk=500)
        for c in chunk
    )
    yield from (contact_dict(c) for c in islice(rows, limit))


def find_contact(contact_id: int) -> Contact | None:
    contact = db.session.get(Contact, parse_id(contact_id)) if parse_id(contact_id) else None
    return contact if contact is not None and not contact.is_deleted else None


@dataclass
class ContactDetail:
    """Everything about one contact: Stripe customers, giving, recurring, payments, intents, events."""

    contact: Contact
    customers: list[StripeCustomer]
    contributions: list[Contribution]
    contributions_total: int
    recurring: list[ContributionRecur]
    payments: list[Payment]
    payments_total: int
    intents: list[StripePaymentIntent]
    events: list[StripeEvent]
    giving: Giving
    processors: dict[int, PaymentProcessor]


RECENT = 25


def detail(contact: Contact) -> ContactDetail:
    customers = sorted(contact.stripe_customers, key=lambda s: s.id)
    customer_ids = [s.customer_id for s in customers]
    when = func.coalesce(Contribution.receive_date, Contribution.created_at)
    contributions = list(
        db.session.scalars(
            select(Contribution)
            .where(Contribution.contact_id == contact.id)
            .options(selectinload(Contribution.recur), selectinload(Contribution.payments))
            .order_by(when.desc(), Contribution.id.desc())
            .limit(RECENT)
        )
    )
    n_contributions = int(
        db.session.scalar(
            select(func.count()).select_from(Contribution).where(Contribution.contact_id == contact.id)
        )
        or 0
    )
    recurring = list(
        db.session.scalars(
            select(ContributionRecur)
            .where(ContributionRecur.contact_id == contact.id)
            .order_by(ContributionRecur.id.desc())
        )
    )
    mine = select(Contribution.id).where(Contribution.contact_id == contact.id)
    pay_when = func.coalesce(Payment.payment_date, Payment.created_at)
    payments = list(
        db.session.scalars(
            select(Payment)
            .where(Payment.contribution_id.in_(mine))
            .order_by(pay_when.desc(), Payment.id.desc())
            .limit(RECENT)
        )
    )
    n_payments = int(
        db.session.scalar(select(func.count()).select_from(Payment).where(Payment.contribution_id.in_(mine)))
        or 0
    )
    intent_conds = [StripePaymentIntent.contact_id == contact.id]
    if customer_ids:
        intent_conds.append(StripePaymentIntent.customer_id.in_(customer_ids))
    intents = list(
        db.session.scalars(
            select(StripePaymentIntent)
            .where(or_(*intent_conds))
            .order_by(StripePaymentIntent.created_date.desc())
            .limit(RECENT)
        )
    )
    events = (
        list(
            db.session.scalars(
                select(StripeEvent)
                .where(StripeEvent.customer_id.in_(customer_ids))
                .order_by(StripeEvent.created.desc(), StripeEvent.id.desc())
                .limit(RECENT)
            )
        )
        if customer_ids
        else []
    )
    processors = {p.id: p for p in db.session.scalars(select(PaymentProcessor))}
    return ContactDetail(
        contact,
        customers,
        contributions,
        n_contributions,
        recurring,
        payments,
        n_payments,
        intents,
        events,
        giving_of([contact.id])[contact.id],
        processors,
    )


def checked_contact_fields(name: str | None, email: str | None) -> tuple[str, str]:
    """A contact's name and email as ``update_contact`` saves them, or a ``ServiceError`` naming the field."""
    name = check_text(name, "Name", "name")
    email = check_text(email, "Email", "email")
    if not name:
        raise ServiceError("Name: give the contact a name", field="name")
    if len(name) > 255 or len(email) > 255:
        raise ServiceError(
            "Keep the name and email under 255 characters", field="name" if len(name) > 255 else "email"
        )
    if email and not re.fullmatch(r"[^@\s]+@[^@\s]+\.[^@\s]+", email):
        raise ServiceError(f"Email: {email[:60]!r} is not an email address", field="email")
    return name, email


def update_contact(
    contact: Contact, *, name: str | None, email: str | None, commit: bool = True
) -> list[str]:
    """Change a contact's name and email (staff, on the contact's page). When either changes, each
    of the contact's Stripe customers is brought in line (through the outbox). Returns what
    changed. Commits, with its audit entry (``commit=False``: the caller commits, in its transaction)."""
    name, email = checked_contact_fields(name, email)
    if commit:
        immediate()
    changed = {}
    if name != (contact.display_name or ""):
        changed["name"] = [contact.display_name, name]
        contact.display_name = name
    if email != (contact.email or ""):
        changed["email"] = [contact.email, email or None]
        contact.email = email or None
    if not changed:
        if commit:
            db.session.rollback()
        return []
    db.session.flush()
    request_contact_sync(contact)
    audit.record(
        "contact.update", object_type="contact", object_id=str(contact.id), parameters=changed, commit=False
    )
    if commit:
        db.session.commit()
    return list(changed)
