"""Imports from a real localstripe (its own, emptied per test, since "all" means everything Stripe
has): one, some with paging, all; a second import changes nothing; customers matched by metadata
and by email, never twice; a customer deleted in Stripe; an interrupted import resumed."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import func, select

from admin.demo_data import donation_plan, subscribe
from admin.errors import ServiceError
from admin.extensions import db
from admin.models import AuditLog, Contact, Contribution, ContributionRecur, Payment, StripeCustomer
from admin.models.jobs import Job
from admin.services.core import jobs
from admin.services.records.imports import import_charge, import_customer, import_subscription_by_id
from admin.services.settings.processors import gateway
from admin.timeutil import utcnow
from admin.worker import queues

pytestmark = pytest.mark.localstripe


def count(model, *where) -> int:
    return db.session.scalar(select(func.count()).select_from(model).where(*where))


def run_job(kind: str, params: dict, processor_id: int) -> Job:
    job = jobs.start(kind, params, processor_id=processor_id).job
    while queues.run_jobs("test", seconds=60):
        pass
    db.session.refresh(job)
    return job


def donors(gw, n: int, *, amount: int = 1500) -> list[dict]:
    """``n`` donors with a monthly subscription each, in Stripe's order (oldest first in localstripe)."""
    plan = donation_plan(gw, amount)
    subs = []
    for i in range(n):
        cus = gw.create("customers", {"name": f"Donor {i}", "email": f"donor{i}@example.org"})
        subs.append(subscribe(gw, cus["id"], plan))
    return subs


def snapshot() -> dict:
    """Every record an import writes, with its last-changed time: equal snapshots, nothing changed."""

    def rows(model):
        cols = [c for c in model.__table__.columns]
        return sorted(tuple(r) for r in db.session.execute(select(*cols)).all())

    return {m.__name__: rows(m) for m in (Contact, StripeCustomer, ContributionRecur, Contribution, Payment)}


def test_import_one_subscription_brings_its_invoice_charge_and_contact(empty_processor):
    gw = gateway(empty_processor)
    existing = Contact(display_name="Ada L.", email="donor0@example.org")
    db.session.add(existing)
    db.session.commit()
    sub = donors(gw, 1, amount=2500)[0]
    invoice = gw.list("invoices", subscription=sub["id"])["data"][0]
    charge = invoice["charge"]

    done = import_subscription_by_id(empty_processor, sub["id"])
    assert done.outcome == "created" and done.differences == []
    recur = done.recur
    assert (recur.subscription_id, recur.amount, recur.currency, recur.interval, recur.status) == (
        sub["id"],
        2500,
        "usd",
        "month",
        "In Progress",
    )
    assert recur.contact_id == existing.id  # matched by email, not a second contact
    c = db.session.scalar(select(Contribution).where(Contribution.recur_id == recur.id))
    assert (c.trxn_id, c.invoice_id, c.status, c.amount, c.contact_id) == (
        invoice["id"],
        invoice["id"],
        "Completed",
        2500,
        existing.id,
    )
    [pay] = c.payments
    assert (pay.trxn_id, pay.charge_id, pay.amount, pay.status) == (
        charge["id"],
        charge["id"],
        2500,
        "Completed",
    )
    assert count(Contact) == 1
    entry = db.session.scalar(select(AuditLog).where(AuditLog.action == "import.subscription"))
    assert entry.object_id == sub["id"] and entry.result == "ok"

    again = import_subscription_by_id(empty_processor, sub["id"])
    assert again.outcome == "unchanged"
    assert count(AuditLog, AuditLog.action == "import.subscription") == 1


def test_import_one_that_stripe_does_not_have_says_what_stripe_said(empty_processor):
    with pytest.raises(ServiceError) as err:
        import_subscription_by_id(empty_processor, "sub_doesnotexist")
    assert err.value.message.startswith(
        "Stripe: there is no subscription sub_doesnotexist"
    )  # not "Not Found"
    entry = db.session.scalar(select(AuditLog).where(AuditLog.action == "import.subscription"))
    assert entry.result == "error" and entry.object_id == "sub_doesnotexist"
    with pytest.raises(ServiceError, match="not a subscription id"):
        import_subscription_by_id(empty_processor, "cus_123")


def test_import_some_pages_with_limit_and_starting_after(empty_processor):
    subs = donors(gateway(empty_processor), 5)
    first = run_job("imports.subscriptions", {"limit": 2, "starting_after": None}, empty_processor.id)
    assert (first.status, first.done, first.total) == ("done", 2, 2)
    imported = set(db.session.scalars(select(ContributionRecur.subscription_id)))
    assert imported == {subs[4]["id"], subs[3]["id"]}  # Stripe's order: newest first

    second = run_job(
        "imports.subscriptions", {"limit": 2, "starting_after": subs[3]["id"]}, empty_processor.id
    )
    assert second.done == 2 and second.result["counts"] == {"created": 2}
    imported = set(db.session.scalars(select(ContributionRecur.subscription_id)))
    assert imported == {s["id"] for s in subs[1:]}


@pytest.mark.postgres
def test_import_all_then_again_changes_nothing(empty_processor):
    gw = gateway(empty_processor)
    subs = donors(gw, 3)
    gw.call("subscriptions", "cancel", subs[2]["id"])  # a cancelled one comes too (status=all)
    job = run_job("imports.subscriptions", {}, empty_processor.id)
    assert (job.status, job.done, job.total) == ("done", 3, 3)
    assert job.result["counts"] == {"created": 3}
    assert count(ContributionRecur) == 3 and count(Contribution) == 3 and count(Payment) == 3
    assert count(Contact) == 3 and count(StripeCustomer) == 3
    statuses = dict(
        db.session.execute(select(ContributionRecur.subscription_id, ContributionRecur.status)).all()
    )
    assert statuses[subs[2]["id"]] == "Cancelled" and statuses[subs[0]["id"]] == "In Progress"
    before = snapshot()
    audits = count(AuditLog)

    again = run_job("imports.subscriptions", {}, empty_processor.id)
    assert again.status == "done" and again.result["counts"] == {"unchanged": 3}
    assert snapshot() == before  # not a field, not a timestamp
    assert count(AuditLog) == audits + 1  # only the second job's start


def test_importing_unchanged_subscriptions_again_reads_no_balance_transaction(empty_processor):
    """What is already recorded as Stripe has it is not read again: the second import reads the subscriptions
    and their invoices (charges expanded), not each charge's fee and net once more."""
    from admin.stripe_gateway import call_counts

    donors(gateway(empty_processor), 3)
    first_before = call_counts()
    run_job("imports.subscriptions", {}, empty_processor.id)
    first = _calls_since(first_before)
    assert first.get("balance_transactions.retrieve") == 3  # fee and net of each charge, once
    before = call_counts()
    again = run_job("imports.subscriptions", {}, empty_processor.id)
    assert again.result["counts"] == {"unchanged": 3}
    calls = _calls_since(before)
    assert "balance_transactions.retrieve" not in calls, calls
    assert sum(calls.values()) <= 1 + 3  # one list of subscriptions, one read of each one's invoices


def _calls_since(before: dict) -> dict:
    from admin.stripe_gateway import call_counts

    after = call_counts()
    return {k: after[k] - before.get(k, 0) for k in after if after[k] != before.get(k, 0)}


@pytest.mark.postgres
def test_customers_matched_by_metadata_then_email_else_created_and_never_twice(empty_processor):
    gw = gateway(empty_processor)
    ada = Contact(display_name="Ada", email="ada@example.org")
    bob = Contact(display_name="Bob", email="Bob@Example.org")
    db.session.add_all([ada, bob])
    db.session.commit()
    by_meta = gw.create(
        "customers", {"name": "A. L.", "email": "other@example.org", "metadata": {"contact_id": str(ada.id)}}
    )
    by_civicrm = gw.create(
        "customers", {"email": "x@example.org", "metadata": {"civicrm_contact_id": str(bob.id)}}
    )
    by_email = gw.create("customers", {"name": "Robert", "email": "bob@example.org"})
    new = gw.create("customers", {"name": "Cleo New", "email": "cleo@example.org", "phone": "+4912345"})
    unknown_id = gw.create("customers", {"email": "ada@example.org", "metadata": {"contact_id": "999999"}})

    job = run_job("imports.customers", {}, empty_processor.id)
    assert job.status == "done" and job.done == 5
    assert job.result["counts"] == {"metadata": 2, "email": 2, "created": 1}
    links = dict(db.session.execute(select(StripeCustomer.customer_id, StripeCustomer.contact_id)).all())
    assert links[by_meta["id"]] == ada.id and links[by_civicrm["id"]] == bob.id
    assert links[by_email["id"]] == bob.id and links[unknown_id["id"]] == ada.id
    cleo = db.session.get(Contact, links[new["id"]])
    assert (cleo.display_name, cleo.email, cleo.phone) == ("Cleo New", "cleo@example.org", "+4912345")
    assert count(Contact) == 3

    # again, and the same customers reached through a subscription: still one contact each
    again = run_job("imports.customers", {}, empty_processor.id)
    assert again.result["counts"] == {"linked": 5}
    sub = subscribe(gw, new["id"], donation_plan(gw, 500))
    import_subscription_by_id(empty_processor, sub["id"])
    assert count(Contact) == 3 and count(StripeCustomer) == 5
    assert db.session.scalar(select(ContributionRecur.contact_id)) == cleo.id


def test_import_customers_reads_the_list_only_one_call_per_page(empty_processor):
    from admin.stripe_gateway import call_counts

    gw = gateway(empty_processor)
    for i in range(130):
        gw.create("customers", {"email": f"many{i}@example.org"})
    before = call_counts()
    job = run_job("imports.customers", {}, empty_processor.id)
    after = call_counts()
    assert job.done == 130 and count(StripeCustomer) == 130
    calls = {k: after.get(k, 0) - before.get(k, 0) for k in after if after.get(k, 0) != before.get(k, 0)}
    assert calls == {"customers.list": 2}


def test_a_customer_deleted_in_stripe(empty_processor):
    gw = gateway(empty_processor)
    cus = gw.create("customers", {"name": "Gone Soon", "email": "gone@example.org"})
    contact, how = import_customer(empty_processor, cus["id"])
    assert how == "created"
    gw.call("customers", "delete", cus["id"])

    with pytest.raises(ServiceError) as err:
        import_customer(empty_processor, cus["id"])
    assert err.value.message.startswith("Stripe: ")
    link = db.session.scalar(select(StripeCustomer).where(StripeCustomer.customer_id == cus["id"]))
    assert link.deleted and link.contact_id == contact.id  # the contact and its history stay
    # listing imports carry on past it: Stripe no longer lists it
    assert run_job("imports.customers", {}, empty_processor.id).result.get("counts", {}) == {}


@pytest.mark.postgres
def test_an_interrupted_import_continues_from_its_cursor(empty_processor):
    subs = donors(gateway(empty_processor), 4)
    job = jobs.start("imports.subscriptions", {}, processor_id=empty_processor.id).job
    held = queues.claim_job("first")
    assert jobs.run_slice(held, "first", seconds=0) == "running"  # one subscription, then the slice ends
    db.session.refresh(job)
    assert job.done == 1 and job.cursor["starting_after"] == subs[-1]["id"]  # newest first
    # the next worker takes the lease and dies in the middle of a subscription...
    held = queues.claim_job("dying")
    held.locked_until = utcnow() - timedelta(seconds=1)  # ...its lease runs out
    db.session.commit()
    while queues.run_jobs("other", seconds=60):
        pass
    db.session.refresh(job)
    assert (job.status, job.done) == ("done", 4)
    assert set(db.session.scalars(select(ContributionRecur.subscription_id))) == {s["id"] for s in subs}
    assert count(Contribution) == 4 and count(Payment) == 4  # none twice, none skipped


def test_import_charge_by_id_with_a_contact(empty_processor):
    gw = gateway(empty_processor)
    cus = gw.create("customers", {"email": "charged@example.org"})
    pm = gw.create(
        "payment_methods",
        {
            "type": "card",
            "card": {"number": "4242424242424242", "exp_month": 12, "exp_year": 2030, "cvc": "123"},
        },
    )
    gw.call("payment_methods", "attach", pm["id"], params={"customer": cus["id"]})
    pi = gw.create(
        "payment_intents",
        {
            "amount": 4200,
            "currency": "usd",
            "customer": cus["id"],
            "payment_method": pm["id"],
            "payment_method_types": ["card"],
            "confirm": True,
        },
    )
    contact = Contact(display_name="Chosen", email="chosen@example.org")
    db.session.add(contact)
    db.session.commit()
    c = import_charge(
        empty_processor,
        pi["latest_charge"] if isinstance(pi["latest_charge"], str) else pi["latest_charge"]["id"],
        contact_id=contact.id,
    )
    assert (c.status, c.amount, c.contact_id) == ("Completed", 4200, contact.id)
    assert [p.amount for p in c.payments] == [4200]
