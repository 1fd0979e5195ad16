"""The record jobs: import subscriptions or customers from Stripe (all, or some with
``limit`` / ``starting_after``), compare every subscription with Stripe, and for every linked
Stripe customer push paydesk's metadata or read the contact id back from it.

Each is a generator run by :mod:`admin.services.core.jobs` (see that module for the contract): it
resumes from ``ctx.cursor`` (the id of the last Stripe object done, as Stripe's
``starting_after``), commits its own unit of work and yields after it. Units are idempotent, so
a unit run twice after a crash changes nothing the second time.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import partial

from sqlalchemy import select

from admin.dbutil import immediate
from admin.errors import ServiceError
from admin.extensions import db
from admin.models import PaymentProcessor, StripeCustomer
from admin.services.core import bulk
from admin.services.core.jobs import JobContext, job_kind
from admin.services.core.params import JobParams, NoParams
from admin.services.core.stripe_reader import StripeReader, write_after_reading
from admin.services.records.customers import push_customer_metadata, update_contact_id
from admin.services.records.imports import fetch_subscription, import_customer_objects, import_subscription
from admin.services.records.subscriptions import compare, invoice_rows, store_check
from admin.stripe_gateway import GatewayError

# Customers are linked a page at a time (one transaction per Stripe page); at most this many
# per unit so the progress bar moves and a cancel is honoured soon.
CUSTOMER_UNIT = 100
MAX_IMPORT = 1_000_000


@dataclass
class ImportSome(JobParams):
    """``imports.subscriptions`` / ``imports.customers``: all (both empty), or some (CiviCRM's "at most N,
    after an id"). Page: the import forms on /subscriptions and /customers; CLI: ``import subscriptions``,
    ``import customers``."""

    limit: int | None = field(
        default=None,
        metadata={
            "label": "Import at most",
            "min": 1,
            "max": MAX_IMPORT,
            "help": "At most this many (default: all).",
        },
    )
    starting_after: str | None = field(
        default=None, metadata={"label": "After id", "help": "Begin after this id (Stripe's order)."}
    )


def _which(p: dict, noun: str) -> str:
    if p.get("limit"):
        return f"{p['limit']} {noun}" + (f" after {p['starting_after']}" if p.get("starting_after") else "")
    return f"all {noun}" + (f" after {p['starting_after']}" if p.get("starting_after") else "")


def _remaining(ctx: JobContext) -> int | None:
    limit = int(ctx.params.get("limit") or 0)
    if not limit:
        return None
    ctx.total = limit
    return max(0, limit - ctx.done)


def _start_after(ctx: JobContext) -> str | None:
    return ctx.cursor.get("starting_after") or ctx.params.get("starting_after") or None


@job_kind(
    "imports.subscriptions",
    params=ImportSome,
    title=lambda p: f"Import {_which(p, 'subscriptions')} from Stripe, with their invoices and charges",
)
def import_subscriptions(ctx: JobContext):
    """CiviCRM's importallsubscriptions / importsubscriptions: every subscription Stripe has (any
    status), each with its invoices and charges; one subscription per unit."""
    proc = ctx.require_processor()
    left = _remaining(ctx)
    if left == 0:
        return
    reader = StripeReader(proc)
    for page in reader.pages("subscriptions", status="all", starting_after=_start_after(ctx), limit=left):
        for sub in page:
            try:
                invoices = fetch_subscription(reader, proc, sub)  # Stripe first, then the write transaction
                done = write_after_reading(reader, partial(import_subscription, reader, proc, sub, invoices))
                ctx.count(done.outcome)
                if done.differences:
                    ctx.count("still differ")
                    ctx.note(
                        f"{sub['id']}: still differs from Stripe: "
                        + "; ".join(f"{d['what']} {d['object']}" for d in done.differences[:5])
                    )
            except GatewayError as err:
                if err.transient:
                    raise  # the runner retries the job later, from this subscription
                db.session.rollback()
                ctx.count("failed")
                ctx.note(f"{sub['id']}: Stripe: {err.message}")
            db.session.commit()
            ctx.cursor["starting_after"] = sub["id"]
            ctx.done += 1
            yield
    if left is None:
        ctx.total = ctx.done


@job_kind(
    "imports.customers", params=ImportSome, title=lambda p: f"Import {_which(p, 'customers')} from Stripe"
)
def import_customers(ctx: JobContext):
    """CiviCRM's importallcustomers / importcustomers: link every Stripe customer to a contact
    (by metadata contact id, then email, else a new contact). Read from Stripe's list only: no
    customer is fetched one by one."""
    proc = ctx.require_processor()
    left = _remaining(ctx)
    if left == 0:
        return
    reader = StripeReader(proc)
    for page in reader.pages("customers", starting_after=_start_after(ctx), limit=left):
        for i in range(0, len(page), CUSTOMER_UNIT):
            unit = page[i : i + CUSTOMER_UNIT]
            immediate()
            for _, how in import_customer_objects(proc, unit):
                ctx.count(how)
            db.session.commit()
            ctx.cursor["starting_after"] = unit[-1]["id"]
            ctx.done += len(unit)
            yield
    if left is None:
        ctx.total = ctx.done


@job_kind(
    "subscriptions.compare",
    params=NoParams,
    title=lambda p: "Compare every subscription with Stripe (changes nothing)",
)
def compare_subscriptions(ctx: JobContext):
    """Compare each of Stripe's subscriptions (and its invoices and charges) with paydesk's
    records and keep what differs, for the "differs from Stripe" filter. Records are not changed."""
    proc = ctx.require_processor()
    reader = StripeReader(proc)
    for page in reader.pages("subscriptions", status="all", starting_after=_start_after(ctx)):
        for sub in page:
            invoices = fetch_subscription(reader, proc, sub)  # Stripe first, then the write transaction
            differences = write_after_reading(reader, partial(_compare_and_keep, reader, proc, sub, invoices))
            db.session.commit()
            ctx.count("differ" if differences else "same")
            ctx.cursor["starting_after"] = sub["id"]
            ctx.done += 1
            yield
    ctx.total = ctx.done


def _compare_and_keep(
    reader: StripeReader, proc: PaymentProcessor, sub: dict, invoices: list[dict]
) -> list[dict]:
    from admin.services.records.recurring import by_subscription

    differences = compare(sub, by_subscription(proc.id, sub["id"]), invoice_rows(reader, proc, invoices))
    store_check(proc.id, sub["id"], sub, differences)
    return differences


def linked_customers(processor_id: int):
    """A processor's live customer links (what "push to all" works through)."""
    return select(StripeCustomer).where(
        StripeCustomer.processor_id == processor_id, StripeCustomer.deleted.is_(False)
    )


@job_kind(
    "customers.update_metadata",
    params=NoParams,
    title=lambda p: "Push contact details to every linked Stripe customer",
)
def update_metadata(ctx: JobContext):
    """CiviCRM's StripeCustomer.updatestripemetadata for all: name, email, description, contact id,
    link and version on every linked customer, one customer per unit."""
    proc = ctx.require_processor()
    for link in bulk.each(ctx, linked_customers(proc.id), StripeCustomer):
        try:
            push_customer_metadata(proc, link)
            ctx.count("updated")
        except ServiceError as err:
            ctx.count("failed")
            ctx.note(f"{link.customer_id}: {err.message}")
        bulk.done(ctx, link)
        yield


@job_kind(
    "customers.update_contact_ids",
    params=NoParams,
    title=lambda p: "Read contact ids from every linked Stripe customer",
)
def update_contact_ids(ctx: JobContext):
    """CiviCRM's StripeCustomer.updatecontactids for all: where a linked customer's metadata names
    another (existing) contact, link the customer to that contact. Reads Stripe's customer list."""
    proc = ctx.require_processor()
    reader = StripeReader(proc)
    for page in reader.pages("customers", starting_after=_start_after(ctx)):
        immediate()
        for customer in page:
            ctx.count(update_contact_id(proc, customer))
        db.session.commit()
        ctx.cursor["starting_after"] = page[-1]["id"]
        ctx.done += len(page)
        yield
    ctx.total = ctx.done
