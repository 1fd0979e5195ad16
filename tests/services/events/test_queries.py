"""The events console's services: every filter on stored events, Stripe's own list (paged past 100),
a subscription's expected charges, replay, populate, retry all, cleanup."""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest
import stripe_objects as so
from sqlalchemy import func, select
from stripe_world import OneOff, Renewal

from admin.extensions import db
from admin.models import (
    EVENT_STATUSES,
    AuditLog,
    Contact,
    Contribution,
    OutboxTask,
    Payment,
    StripeCustomer,
    StripeEvent,
)
from admin.models.jobs import EventAttempt
from admin.services.core import jobs
from admin.services.events import queries as ev
from admin.services.events.ops import replay
from admin.services.settings.processors import add_processor
from admin.stripe_gateway import Gateway
from admin.timeutil import utcnow
from admin.webhooks.ingest import store_event
from admin.worker import queues
from admin.worker.loop import run_once


def ids_of(flt: ev.EventFilter) -> list[str]:
    return [e.event_id for e in ev.local_page(flt).rows]


def run_job(kind: str, params: dict, processor_id: int | None = None):
    job = jobs.start(kind, params, processor_id=processor_id).job
    while queues.run_jobs("test", seconds=60):
        pass
    db.session.refresh(job)
    return job


@pytest.fixture
def stored(offline_processor):
    """A small log: two processors, several types, statuses and days, one contact with an email."""
    other = add_processor(
        name="Second account",
        secret_key="sk_test_other",
        webhook_secrets=["whsec_x"],
        api_base="http://127.0.0.1:9",
    )
    day = int(datetime(2026, 11, 10).timestamp())
    spec = [  # (name, processor, type, status, created, object)
        (
            "paid",
            offline_processor,
            "invoice.paid",
            "success",
            day,
            so.invoice(customer="cus_ada", subscription="sub_1"),
        ),
        (
            "failed",
            offline_processor,
            "invoice.payment_failed",
            "error",
            day + 86400,
            so.invoice(customer="cus_ada", subscription="sub_1"),
        ),
        (
            "charge",
            offline_processor,
            "charge.succeeded",
            "queued",
            day + 2 * 86400,
            so.charge(customer="cus_bob", payment_intent=None),
        ),
        (
            "other",
            other,
            "charge.refunded",
            "ignored",
            day + 3 * 86400,
            so.charge(customer=None, payment_intent=None),
        ),
    ]
    events = {}
    for name, proc, type_, status, created, obj in spec:
        e = so.event(type_, obj, created=created)
        store_event(proc, e)
        row = db.session.scalar(select(StripeEvent).where(StripeEvent.event_id == e["id"]))
        row.status = status
        events[name] = e
    ada = Contact(display_name="Ada", email="ada@example.org")
    db.session.add(ada)
    db.session.flush()
    db.session.add(
        StripeCustomer(customer_id="cus_ada", contact_id=ada.id, processor_id=offline_processor.id)
    )
    db.session.commit()
    return events, offline_processor, other


def test_every_filter_on_stored_events(stored):
    events, proc, other = stored
    eid = {k: v["id"] for k, v in events.items()}
    newest_first = [eid["other"], eid["charge"], eid["failed"], eid["paid"]]
    assert ids_of(ev.EventFilter()) == newest_first
    assert ids_of(ev.EventFilter(type=["invoice.paid"])) == [eid["paid"]]
    assert ids_of(ev.EventFilter(type=["invoice.paid", "charge.refunded"])) == [eid["other"], eid["paid"]]
    assert ids_of(ev.EventFilter(type=["invoice.*"])) == [eid["failed"], eid["paid"]]
    assert ids_of(ev.EventFilter(type=["charge.*"], ppid=proc.id)) == [eid["charge"]]
    assert ids_of(ev.EventFilter(status=["error", "queued"])) == [eid["charge"], eid["failed"]]
    assert ids_of(ev.EventFilter(since=datetime(2026, 11, 11), until=datetime(2026, 11, 13))) == [
        eid["charge"],
        eid["failed"],
    ]
    assert ids_of(ev.EventFilter(q=events["charge"]["data"]["object"]["id"])) == [eid["charge"]]
    assert ids_of(ev.EventFilter(q=eid["failed"])) == [eid["failed"]]
    assert ids_of(ev.EventFilter(q="ADA@example.org")) == [eid["failed"], eid["paid"]]  # the contact's email
    assert ids_of(ev.EventFilter(subscription="sub_1")) == [eid["failed"], eid["paid"]]
    assert ids_of(ev.EventFilter(q="nothing-like-this")) == []
    counts = ev.status_counts(
        ev.EventFilter(ppid=proc.id, status=["error"])
    )  # counts ignore the status choice
    assert counts == {"logged": 0, "queued": 1, "processing": 0, "success": 1, "error": 1, "ignored": 0}


def test_hide_processed_leaves_out_events_whose_contribution_is_complete(world, offline_processor):
    done, pending = Renewal(world), Renewal(world)
    for e in done.events.values():
        store_event(offline_processor, e)
    run_once()
    late = pending.events["invoice.paid"]
    store_event(offline_processor, late)  # not processed yet
    shown = set(ids_of(ev.EventFilter(filter_processed=True, size=100)))
    assert shown == {late["id"]}
    assert len(ids_of(ev.EventFilter(size=100))) == 6


def _event_row(event_id: str) -> StripeEvent:
    return db.session.scalar(select(StripeEvent).where(StripeEvent.event_id == event_id))


def test_replay_fetches_the_event_from_stripe_honours_no_receipt_and_changes_nothing_twice(
    world, offline_processor
):
    pay = OneOff(world, amount=4200)
    event = pay.event("charge.succeeded")
    world.add(event)  # Stripe still has it
    store_event(offline_processor, event)
    world.fail(r"/v1/balance_transactions/", [500] * 30)  # Stripe down while the worker works: error
    from flask import current_app

    current_app.config["WORKER_MAX_ATTEMPTS"] = 1
    run_once()
    row = _event_row(event["id"])
    assert row.status == "error" and "500" in row.last_error
    world._failures.clear()

    res = replay(offline_processor, row=row, no_receipt=True)
    assert res.ok and res.fetched and res.status == "success"
    assert world.count("GET", rf"/v1/events/{event['id']}$") == 1
    c = db.session.scalar(select(Contribution).where(Contribution.trxn_id == pay.charge["id"]))
    assert c.status == "Completed" and c.amount == 4200
    assert (
        db.session.scalar(select(func.count()).select_from(OutboxTask).where(OutboxTask.kind == "receipt"))
        == 0
    )

    replay(offline_processor, row=row)  # again, receipts allowed this time: the gift was completed already
    assert db.session.scalar(select(func.count()).select_from(Contribution)) == 1
    assert db.session.scalar(select(func.count()).select_from(Payment)) == 1
    attempts = list(
        db.session.scalars(
            select(EventAttempt).where(EventAttempt.event_row_id == row.id).order_by(EventAttempt.id)
        )
    )
    assert [a.outcome for a in attempts] == ["error", "success", "success"]
    assert attempts[-1].actor and attempts[-1].stripe_request_ids  # who replayed, and Stripe's request ids
    entries = list(db.session.scalars(select(AuditLog).where(AuditLog.action == "event.replay")))
    assert len(entries) == 2 and entries[0].parameters["no_receipt"] is True and entries[0].result == "ok"


def test_replay_of_an_event_stripe_no_longer_has_uses_the_stored_copy(world, offline_processor):
    pay = OneOff(world)
    event = pay.event("charge.succeeded")  # not added to the world: Stripe answers 404 for the event
    store_event(offline_processor, event, status="logged")
    res = replay(offline_processor, row=_event_row(event["id"]))
    assert res.ok and not res.fetched and "no longer has" in res.message
    assert db.session.scalar(select(Contribution.status)) == "Completed"


def test_retry_all_replays_or_imports_exactly_the_payments_paydesk_lacks(world, offline_processor):
    recorded, replayable, _ = (
        OneOff(world, amount=1000),
        OneOff(world, amount=2000),
        OneOff(world, amount=3000),
    )
    failed = so.charge(customer=None, payment_intent=None, amount=500, status="failed", captured=False)
    world.add(failed)
    ok_event = recorded.event("charge.succeeded")
    store_event(offline_processor, ok_event)
    run_once()
    stuck = replayable.event("payment_intent.succeeded")
    world.add(stuck)
    store_event(offline_processor, stuck, status="logged")  # pulled into the log but never processed
    job = run_job("events.retry_all", {"limit": 25, "days": 30}, offline_processor.id)
    assert job.status == "done", job.error
    assert job.result["counts"] == {"replayed": 1, "imported": 1}
    amounts = sorted(
        db.session.scalars(select(Contribution.amount).where(Contribution.status == "Completed"))
    )
    assert amounts == [1000, 2000, 3000]
    assert _event_row(stuck["id"]).status == "success"
    again = run_job("events.retry_all", {"limit": 25, "days": 30}, offline_processor.id)
    assert again.done == 0 and not (again.result or {}).get("counts")


def test_cleanup_deletes_old_processed_events_and_keeps_errors_unless_asked(offline_processor):
    old = utcnow() - timedelta(days=40)
    for i, status in enumerate(["success", "ignored", "logged", "error", "queued"]):
        for age, tag in ((old, "old"), (utcnow(), "new")):
            db.session.add(
                StripeEvent(
                    processor_id=offline_processor.id,
                    event_id=f"evt_{tag}{i}",
                    type="x.y",
                    raw="{}",
                    status=status,
                    received_at=age,
                )
            )
    db.session.commit()
    job = run_job("events.cleanup", {"older_than": "30 days", "include_errors": False, "ppid": None})
    assert job.result["counts"] == {"deleted": 3}
    left = set(db.session.scalars(select(StripeEvent.event_id)))
    assert left == {"evt_old3", "evt_old4"} | {f"evt_new{i}" for i in range(5)}
    run_job("events.cleanup", {"older_than": "30 days", "include_errors": True, "ppid": None})
    assert "evt_old3" not in set(db.session.scalars(select(StripeEvent.event_id)))
    assert "evt_old4" in set(db.session.scalars(select(StripeEvent.event_id)))  # queued: never deleted


# -- against localstripe ------------------------------------------------------------------------


@pytest.mark.localstripe
def test_stripe_source_pages_past_100_and_marks_what_paydesk_has(processor, localstripe_wiped_after):
    gw = Gateway.for_processor(processor)
    made = {gw.create("customers", {"email": f"page{i}@example.org"})["id"] for i in range(105)}
    flt = ev.EventFilter(source="stripe", type=["customer.created"], size=100)
    first, next_after = ev.stripe_page(processor, flt)
    assert len(first) == 100 and next_after == first[-1].event_id
    rest, _ = ev.stripe_page(processor, flt, starting_after=next_after)
    assert rest and not {r.event_id for r in first} & {r.event_id for r in rest}
    seen = {r.object_id for r in first + rest}
    assert made <= seen  # every customer's event, across the two pages
    stored = first[0].raw
    store_event(processor, stored, status="logged")
    again, _ = ev.stripe_page(processor, flt)
    marks = {r.event_id: r.status for r in again}
    assert marks[stored["id"]] == "logged" and marks[again[1].event_id] == "not in paydesk"


@pytest.mark.localstripe
def test_populate_twice_stores_each_event_once_and_queue_queues_the_logged_ones(processor):
    gw = Gateway.for_processor(processor)
    for i in range(3):
        gw.create("customers", {"email": f"pop{i}@example.org"})
    first = run_job(
        "events.populate", {"types": ["customer.created"], "limit": 0, "queue": False}, processor.id
    )
    n = db.session.scalar(select(func.count()).select_from(StripeEvent))
    assert first.status == "done" and n >= 3 and first.result["counts"] == {"new": n}
    assert set(db.session.scalars(select(StripeEvent.status))) == {"logged"}
    second = run_job(
        "events.populate", {"types": ["customer.created"], "limit": 0, "queue": True}, processor.id
    )
    assert second.result["counts"] == {"queued": n}
    assert db.session.scalar(select(func.count()).select_from(StripeEvent)) == n
    assert set(db.session.scalars(select(StripeEvent.status))) == {"queued"}
    limited = run_job(
        "events.populate", {"types": ["customer.created"], "limit": 2, "queue": True}, processor.id
    )
    assert limited.done == 2 and limited.result["counts"] == {"present": 2}


@pytest.mark.localstripe
def test_expected_charges_show_a_payment_deleted_locally_as_missing(processor):
    gw = Gateway.for_processor(processor)
    cus = gw.create("customers", {"email": "monthly@example.org", "name": "Monthly Donor"})
    pm = gw.create(
        "payment_methods",
        {
            "type": "card",
            "card": {"number": "4242424242424242", "exp_month": 12, "exp_year": 2030, "cvc": "123"},
        },
    )
    gw.call("payment_methods", "attach", pm["id"], params={"customer": cus["id"]})
    gw.update("customers", cus["id"], {"invoice_settings": {"default_payment_method": pm["id"]}})
    product = gw.create("products", {"name": "Monthly gift", "type": "service"})
    plan = gw.create(
        "plans", {"amount": 1200, "currency": "usd", "interval": "month", "product": product["id"]}
    )
    sub = gw.create("subscriptions", {"customer": cus["id"], "items": [{"plan": plan["id"]}]})
    run_job(
        "events.populate", {"types": ["invoice.payment_succeeded"], "limit": 0, "queue": True}, processor.id
    )
    run_once()
    expected = ev.expected_charges(processor, sub["id"])
    assert len(expected) == 1 and expected[0].found and expected[0].amount == 1200
    db.session.delete(expected[0].payment)
    db.session.commit()
    expected = ev.expected_charges(processor, sub["id"])
    assert not expected[0].found and expected[0].charge_id


def test_dates_in_the_filter_are_whole_days():
    flt, errors = ev.EventFilter.from_args({"since": "2026-11-10", "until": "2026-11-10"})
    assert not errors and flt.since == datetime(2026, 11, 10) and flt.until == datetime(2026, 11, 11)
    _, errors = ev.EventFilter.from_args({"since": "2026-11-11", "until": "2026-11-10"})
    assert errors == {"until": "must be after the start date"}


def test_one_processors_events_of_a_status_read_their_own_index(stored):
    """``/events?ppid=..&status=error``: the page and every capped status count read a bounded range of the
    (processor, status, created, id) index, the counts without a table row each (on a million events the counts
    read a whole status range, a table row per event, otherwise); the row's invoice is matched to that processor's
    contribution by the (processor, invoice) index, not by reading every contribution."""
    from query_plans import plans_of, statement

    events, first, other = stored
    invoice = events["failed"]["data"]["object"]["id"]
    ours = Contribution(
        processor_id=first.id,
        invoice_id=invoice,
        trxn_id=invoice,
        amount=1000,
        currency="usd",
        status="Pending",
    )
    theirs = Contribution(
        processor_id=other.id,
        invoice_id=invoice,
        trxn_id=invoice,
        amount=1000,
        currency="usd",
        status="Completed",
    )
    db.session.add_all([ours, theirs])
    db.session.commit()
    flt = ev.EventFilter(ppid=first.id, status=["error"])
    shown: list = []
    plans = plans_of(lambda: shown.extend(ev.describe_rows(ev.local_page(flt).rows)) or ev.status_counts(flt))

    [row] = shown
    assert row.event.event_id == events["failed"]["id"]
    assert [(r.local_type, r.local_id) for r in row.refs if r.kind == "invoice"] == [
        ("contribution", ours.id)
    ]
    index = "ix_stripe_event_processor_status_created_id"
    page = statement(plans, "FROM stripe_event", "ORDER BY")
    assert (
        f"USING INDEX {index} (processor_id=? AND status=?)" in page.plan and "TEMP B-TREE" not in page.plan
    ), page
    counts = statement(plans, "count(*)", "FROM stripe_event")
    assert counts.plan.count(f"USING COVERING INDEX {index} (processor_id=? AND status=?)") == len(
        EVENT_STATUSES
    ), counts
    lookup = statement(plans, "FROM contribution", "contribution.invoice_id IN")
    assert "(processor_id=? AND invoice_id=?)" in lookup.plan, lookup
