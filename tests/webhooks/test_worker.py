"""The worker: any order gives the same records, duplicates apply once, failures retry, crashes lose nothing."""

from __future__ import annotations

import itertools
import json
import os
import subprocess
import sys
import textwrap
from datetime import timedelta

import pytest
import stripe_objects as so
from sqlalchemy import or_, select
from stripe_world import OneOff, Renewal

from admin.extensions import db
from admin.models import (
    Contribution,
    OutboxTask,
    Payment,
    StripeEvent,
    StripePaymentIntent,
)
from admin.timeutil import utcnow
from admin.webhooks.ingest import store_event
from admin.webhooks.worker import run_once

from .conftest import count, feed

RENEWAL_EVENTS = ["invoice.finalized", "invoice.paid", "invoice.payment_succeeded", "charge.succeeded",
                  "payment_intent.succeeded"]


def renewal_records(ren: Renewal) -> dict:
    """What staff see for one renewal, in terms of the scenario's own ids."""
    cs = list(db.session.scalars(select(Contribution).where(or_(
        Contribution.invoice_id == ren.invoice["id"], Contribution.payment_intent_id == ren.intent["id"],
        Contribution.trxn_id.in_([ren.invoice["id"], ren.charge["id"]])))))
    intent = db.session.scalar(select(StripePaymentIntent).filter_by(stripe_intent_id=ren.intent["id"]))
    return {
        "contributions": [(c.status, c.amount, c.currency, c.trxn_id, c.invoice_id,
                           c.recur.subscription_id if c.recur else None, c.recur.status if c.recur else None,
                           c.fee_amount, c.net_amount, c.contact.email if c.contact else None) for c in cs],
        "payments": sorted((p.trxn_id, p.amount, p.fee, p.net, p.status) for c in cs for p in c.payments),
        "receipts": [t.key for c in cs for t in db.session.scalars(
            select(OutboxTask).where(OutboxTask.key == f"receipt:{c.id}"))],
        "intent": intent.status if intent else None,
    }


def expected(ren: Renewal, contribution_id: int) -> dict:
    return {
        "contributions": [("Completed", 1000, "usd", ren.invoice["id"], ren.invoice["id"], ren.subscription["id"],
                           "In Progress", 59, 941, "donor@example.org")],
        "payments": [(ren.charge["id"], 1000, 59, 941, "Completed")],
        "receipts": [f"receipt:{contribution_id}"],
        "intent": "succeeded",
    }


@pytest.mark.parametrize("shape", ["current", "older"])
def test_every_order_of_a_renewals_events_gives_the_same_records(offline_processor, world, shape):
    orders = list(itertools.permutations(RENEWAL_EVENTS))
    assert len(orders) == 120
    for order in orders:
        ren = Renewal(world, shape=shape)
        rows = feed(offline_processor, *(ren.events[t] for t in order))
        assert [r.status for r in rows if r.status not in ("success", "ignored")] == [], (order, [
            (r.type, r.last_error) for r in rows])
        got = renewal_records(ren)
        cid = db.session.scalar(select(Contribution.id).where(Contribution.invoice_id == ren.invoice["id"]))
        assert got == expected(ren, cid), order
    assert count(Payment) == 120 and count(Contribution) == 120


@pytest.mark.postgres
def test_the_same_event_delivered_five_times_makes_one_payment(app, client, offline_processor, world, backend):
    from conftest import WEBHOOK_SECRET
    from stripe_objects import signed

    pay = OneOff(world)
    body, headers = signed(pay.event("charge.succeeded"), WEBHOOK_SECRET)
    answers = [client.post(f"/webhooks/stripe/{offline_processor.id}", data=body, headers=headers)
               for _ in range(5)]
    assert [a.status_code for a in answers] == [200] * 5
    assert [a.json["duplicate"] for a in answers] == [False, True, True, True, True]
    run_once()
    assert count(StripeEvent) == 1 and count(Payment) == 1 and count(Contribution) == 1


def test_stripe_500_during_a_refetch_is_retried_then_succeeds(offline_processor, world):
    ren = Renewal(world)
    world.fail(rf"/v1/invoices/{ren.invoice['id']}$", [500, 503])
    (row,) = feed(offline_processor, ren.events["invoice.paid"], source="replay")  # replays always re-fetch
    assert row.status == "success", row.last_error
    assert world.count("GET", rf"/v1/invoices/{ren.invoice['id']}$") == 3
    assert db.session.scalar(select(Contribution)).status == "Completed"


def test_stripe_down_longer_than_the_gateway_retries_requeues_then_errors(app, offline_processor, world):
    ren = Renewal(world)
    app.config.update(WORKER_MAX_ATTEMPTS=3, WORKER_BACKOFF_BASE=3600)
    world.fail(rf"/v1/invoices/{ren.invoice['id']}$", [503] * 4)  # one whole gateway call (4 attempts)
    store_event(offline_processor, ren.events["invoice.paid"], source="replay")
    run_once()
    row = db.session.scalar(select(StripeEvent))
    assert row.status == "queued" and row.attempts == 1
    assert "Stripe:" in row.last_error and "http=503" in row.last_error and "request=req_world" in row.last_error
    assert row.next_attempt_at > utcnow() + timedelta(minutes=50)
    assert count(Contribution) == 0  # nothing half-done
    # Stripe stays down: each due retry fails until the bound, then the event is left in error for staff
    for _ in range(2):
        world.fail(rf"/v1/invoices/{ren.invoice['id']}$", [503] * 4)
        row.next_attempt_at = utcnow()
        db.session.commit()
        run_once()
    assert row.status == "error" and row.attempts == 3 and row.last_error.startswith("gave up after 3 attempts")


def test_permanent_failure_goes_straight_to_error(offline_processor, world):
    ren = Renewal(world)
    del world.objects[ren.invoice["id"]]
    (row,) = feed(offline_processor, ren.events["invoice.paid"], source="replay")
    assert row.status == "error" and row.attempts == 1 and "No such invoice" in row.last_error


def test_unknown_event_type_is_stored_and_ignored(client, offline_processor, world):
    ev = so.event("issuing_card.created", so.obj("issuing.card", id=so.new_id("ic")))
    (row,) = feed(offline_processor, ev)
    assert row.status == "ignored" and "no handler for issuing_card.created" in row.status_reason
    assert json.loads(row.raw)["id"] == ev["id"]


def test_expired_lease_makes_an_event_claimable_again(offline_processor, world):
    pay = OneOff(world)
    store_event(offline_processor, pay.event("charge.succeeded"))
    row = db.session.scalar(select(StripeEvent))
    row.status, row.locked_by, row.attempts = "processing", "dead-worker", 1
    row.locked_until = utcnow() + timedelta(minutes=5)
    db.session.commit()
    run_once()
    assert row.status == "processing"  # still leased to the dead worker
    row.locked_until = utcnow() - timedelta(seconds=1)
    db.session.commit()
    run_once()
    assert row.status == "success" and row.attempts == 2 and count(Payment) == 1


KILLER = textwrap.dedent("""
    import os, signal, sys
    sys.path[:0] = [{root!r}, {tests!r}]
    from conftest import make_app
    from pathlib import Path
    app = make_app({url!r}, Path({tmp!r}), STRIPE_MAX_ATTEMPTS=1)
    from admin.services import contributions
    real = contributions.add_charge_payment
    def add_then_die(reader, c, charge):
        real(reader, c, charge)
        from admin.extensions import db
        db.session.flush()  # the payment row is written inside the open transaction...
        os.kill(os.getpid(), signal.SIGKILL)  # ...and the worker dies before it commits
    contributions.add_charge_payment = add_then_die
    import responses
    from stripe_world import StripeWorld
    with app.app_context(), responses.RequestsMock(assert_all_requests_are_fired=False) as rsps:
        world = StripeWorld(rsps)
        world.objects.update({objects!r})
        from admin.webhooks.worker import run_once
        run_once()
""")


def test_worker_killed_mid_event_loses_nothing_and_applies_once(app, offline_processor, world, tmp_path):
    from conftest import ROOT

    pay = OneOff(world)
    store_event(offline_processor, pay.event("charge.succeeded"))
    script = KILLER.format(root=str(ROOT), tests=str(ROOT / "tests"), url=app.config["DATABASE_URL"],
                           tmp=str(tmp_path), objects=world.objects)
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60,
                          env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert proc.returncode == -9, proc.stderr[-2000:]
    db.session.expire_all()
    row = db.session.scalar(select(StripeEvent))
    assert row.status == "processing" and row.attempts == 1
    assert count(Payment) == 0 and count(Contribution) == 0  # the dead transaction left nothing behind
    row.locked_until = utcnow() - timedelta(seconds=1)  # its lease runs out
    db.session.commit()
    run_once()
    assert row.status == "success" and count(Payment) == 1 and count(Contribution) == 1
