"""The worker: any order gives the same records, duplicates apply once, failures retry, crashes lose nothing."""

from __future__ import annotations

import itertools
import json
import os
import subprocess
import sys
import textwrap
import threading
import time
from datetime import timedelta

import pytest
import stripe_objects as so
from db_faults import DatabaseOutage
from sqlalchemy import or_, select
from stripe_world import OneOff, Renewal

from admin.extensions import db
from admin.models import Contribution, OutboxTask, Payment, StripeEvent, StripePaymentIntent
from admin.timeutil import utcnow
from admin.webhooks.ingest import store_event
from admin.worker.loop import run_forever, run_once

from .conftest import count, feed

RENEWAL_EVENTS = [
    "invoice.finalized",
    "invoice.paid",
    "invoice.payment_succeeded",
    "charge.succeeded",
    "payment_intent.succeeded",
]


def renewal_records(ren: Renewal) -> dict:
    """What staff see for one renewal, in terms of the scenario's own ids."""
    cs = list(
        db.session.scalars(
            select(Contribution).where(
                or_(
                    Contribution.invoice_id == ren.invoice["id"],
                    Contribution.payment_intent_id == ren.intent["id"],
                    Contribution.trxn_id.in_([ren.invoice["id"], ren.charge["id"]]),
                )
            )
        )
    )
    intent = db.session.scalar(select(StripePaymentIntent).filter_by(stripe_intent_id=ren.intent["id"]))
    return {
        "contributions": [
            (
                c.status,
                c.amount,
                c.currency,
                c.trxn_id,
                c.invoice_id,
                c.recur.subscription_id if c.recur else None,
                c.recur.status if c.recur else None,
                c.fee_amount,
                c.net_amount,
                c.contact.email if c.contact else None,
            )
            for c in cs
        ],
        "payments": sorted((p.trxn_id, p.amount, p.fee, p.net, p.status) for c in cs for p in c.payments),
        "receipts": [
            t.key
            for c in cs
            for t in db.session.scalars(select(OutboxTask).where(OutboxTask.key == f"receipt:{c.id}"))
        ],
        "intent": intent.status if intent else None,
    }


def expected(ren: Renewal, contribution_id: int) -> dict:
    return {
        "contributions": [
            (
                "Completed",
                1000,
                "usd",
                ren.invoice["id"],
                ren.invoice["id"],
                ren.subscription["id"],
                "In Progress",
                59,
                941,
                "donor@example.org",
            )
        ],
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
        assert [r.status for r in rows if r.status not in ("success", "ignored")] == [], (
            order,
            [(r.type, r.last_error) for r in rows],
        )
        got = renewal_records(ren)
        cid = db.session.scalar(select(Contribution.id).where(Contribution.invoice_id == ren.invoice["id"]))
        assert got == expected(ren, cid), order
    assert count(Payment) == 120 and count(Contribution) == 120


@pytest.mark.postgres
def test_the_same_event_delivered_five_times_makes_one_payment(
    app, client, offline_processor, world, backend
):
    from conftest import WEBHOOK_SECRET
    from stripe_objects import signed

    pay = OneOff(world)
    body, headers = signed(pay.event("charge.succeeded"), WEBHOOK_SECRET)
    answers = [
        client.post(f"/webhooks/stripe/{offline_processor.id}", data=body, headers=headers) for _ in range(5)
    ]
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
    assert (
        "Stripe:" in row.last_error and "http=503" in row.last_error and "request=req_world" in row.last_error
    )
    assert row.next_attempt_at > utcnow() + timedelta(minutes=50)
    assert count(Contribution) == 0  # nothing half-done
    # Stripe stays down: each due retry fails until the bound, then the event is left in error for staff
    for _ in range(2):
        world.fail(rf"/v1/invoices/{ren.invoice['id']}$", [503] * 4)
        row.next_attempt_at = utcnow()
        db.session.commit()
        run_once()
    assert (
        row.status == "error" and row.attempts == 3 and row.last_error.startswith("gave up after 3 attempts")
    )


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
    from admin.services.records import contributions
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
        from admin.worker.loop import run_once
        run_once()
""")


def test_worker_killed_mid_event_loses_nothing_and_applies_once(app, offline_processor, world, tmp_path):
    from conftest import ROOT

    pay = OneOff(world)
    store_event(offline_processor, pay.event("charge.succeeded"))
    script = KILLER.format(
        root=str(ROOT),
        tests=str(ROOT / "tests"),
        url=app.config["DATABASE_URL"],
        tmp=str(tmp_path),
        objects=world.objects,
    )
    proc = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    assert proc.returncode == -9, proc.stderr[-2000:]
    db.session.expire_all()
    row = db.session.scalar(select(StripeEvent))
    assert row.status == "processing" and row.attempts == 1
    assert count(Payment) == 0 and count(Contribution) == 0  # the dead transaction left nothing behind
    row.locked_until = utcnow() - timedelta(seconds=1)  # its lease runs out
    db.session.commit()
    run_once()
    assert row.status == "success" and count(Payment) == 1 and count(Contribution) == 1


# -- the database goes away mid-batch ---------------------------------------------------------------


def test_database_lost_while_recording_a_failure_hands_the_batch_back(
    app, offline_processor, world, monkeypatch, caplog
):
    """The first event of a batch fails (Stripe unreachable) and the database goes away while the worker
    records that failure: the whole batch goes back to the queue as soon as the database answers, and is
    processed then, not after its lease (WORKER_LEASE_SECONDS, 120 s)."""
    from admin.services.records import contributions
    from admin.webhooks import pipeline

    app.config.update(DB_RETRY_BACKOFF_MAX=0.05)
    pays = [OneOff(world) for _ in range(5)]
    for pay in pays:
        store_event(offline_processor, pay.event("charge.succeeded"))
    real_add, real_record = contributions.add_charge_payment, pipeline.record_failure
    failed: list[str] = []

    def add_fails_once(reader, c, charge):
        if not failed:
            failed.append(charge["id"])
            raise ConnectionError("Stripe unreachable")
        return real_add(reader, c, charge)

    with DatabaseOutage(db.engine) as outage:

        def record_while_the_database_goes_away(*args, **kwargs):
            outage.fail_next(4)  # this and the next tries fail; then the database is back
            return real_record(*args, **kwargs)

        monkeypatch.setattr(contributions, "add_charge_payment", add_fails_once)
        monkeypatch.setattr(pipeline, "record_failure", record_while_the_database_goes_away)
        run_once()
        assert outage.failures == 4
    rows = db.session.scalars(select(StripeEvent).order_by(StripeEvent.id)).all()
    assert [r.status for r in rows] == ["success"] * 5
    assert [r.attempts for r in rows] == [2, 1, 1, 1, 1]  # only the event that failed used an attempt
    assert count(Payment) == 5
    assert "5 claimed event(s) handed back to the queue" in caplog.text


@pytest.mark.postgres
def test_database_blip_during_an_event_is_retried_at_once_not_after_backoff(
    app, offline_processor, world, monkeypatch, backend
):
    from admin.services.records import contributions

    app.config.update(WORKER_BACKOFF_BASE=3600, DB_RETRY_BACKOFF_MAX=0.05)
    pay = OneOff(world)
    store_event(offline_processor, pay.event("charge.succeeded"))
    real_add = contributions.add_charge_payment
    with DatabaseOutage(db.engine) as outage:

        def add_as_the_database_blips(reader, c, charge):
            if not outage.failures:
                outage.fail_next(3)
            return real_add(reader, c, charge)

        monkeypatch.setattr(contributions, "add_charge_payment", add_as_the_database_blips)
        run_once()
        assert outage.failures == 3
    row = db.session.scalar(select(StripeEvent))
    assert (row.status, row.attempts) == ("success", 2)  # not queued an hour away for a database blip
    assert count(Payment) == 1


def test_worker_rides_out_a_database_outage_with_one_traceback_and_summary_lines(
    app, offline_processor, world, caplog
):
    """``run_forever`` while the database is down: it keeps trying (backing off), logs one traceback and then
    summary lines, and processes what is queued once the database is back."""
    app.config.update(DB_RETRY_BACKOFF_MAX=0.02, OUTAGE_LOG_INTERVAL=0.2, WORKER_IDLE_SLEEP=0.02)
    pay = OneOff(world)
    store_event(offline_processor, pay.event("charge.succeeded"))
    stop = threading.Event()
    with DatabaseOutage(db.engine) as outage:
        outage.down()
        thread = threading.Thread(target=run_forever, args=(app, 2, stop), daemon=True)
        thread.start()
        try:
            assert wait_until(lambda: "worker steps failed in the last" in caplog.text)
            outage.up()
            assert wait_until(lambda: db.session.rollback() or count(Payment) == 1)
        finally:
            stop.set()
            thread.join(30)
    tracebacks = [r for r in caplog.records if r.exc_info]
    assert len(tracebacks) == 1 and "database" in tracebacks[0].getMessage()
    assert db.session.scalar(select(StripeEvent)).status == "success"


def wait_until(condition, timeout: float = 30.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.02)
    return False


def _locked() -> Exception:
    """SQLite's answer when another connection wrote first (SQLITE_BUSY), as SQLAlchemy raises it."""
    import sqlite3

    from sqlalchemy.exc import OperationalError

    err = sqlite3.OperationalError("database is locked")
    err.sqlite_errorcode, err.sqlite_errorname = sqlite3.SQLITE_BUSY, "SQLITE_BUSY"
    return OperationalError("UPDATE stripe_event SET status=?", {}, err)


def test_a_database_locked_for_a_moment_is_retried_without_an_error(
    app, offline_processor, world, monkeypatch, caplog
):
    """A 0.1 s "database is locked" that the worker retries is routine: no ERROR (not even a warning), no
    traceback."""
    import logging

    from admin.dbutil import retry_while_unavailable
    from admin.worker import loop

    app.config.update(WORKER_IDLE_SLEEP=0.02)
    store_event(offline_processor, OneOff(world).event("charge.succeeded"))
    real_batch, calls = loop.run_batch, []

    def locked_once(name):
        calls.append(name)
        if len(calls) == 1:
            time.sleep(0.1)
            raise _locked()
        return real_batch(name)

    monkeypatch.setattr(loop, "run_batch", locked_once)
    stop = threading.Event()
    thread = threading.Thread(target=run_forever, args=(app, 1, stop), daemon=True)
    thread.start()
    try:
        assert wait_until(lambda: db.session.rollback() or count(Payment) == 1)
    finally:
        stop.set()
        thread.join(30)
    tries = []

    def write_once_locked():
        tries.append(1)
        if len(tries) == 1:
            raise _locked()
        return "written"

    assert retry_while_unavailable(write_once_locked, what="recording a receipt") == "written"
    loud = [r for r in caplog.records if r.levelno >= logging.WARNING or r.exc_info]
    assert loud == [], [r.getMessage() for r in loud]
    assert "database is locked: trying again" in caplog.text  # said once, quietly


@pytest.mark.postgres
def test_housekeeping_prunes_old_refusals_and_ended_rate_limit_counters(app, offline_processor):
    """The worker's periodic work keeps donation_refusal, rate_limit and limiter_counter from growing forever;
    what a limit, the alarm or a page still needs stays."""
    from admin.models import DonationForm, DonationRefusal, LimiterCounter, RateLimit
    from admin.worker.loop import housekeeping

    now = utcnow()
    form = DonationForm(slug="spring", title="Spring", processor_id=offline_processor.id, currency="usd")
    db.session.add(form)
    db.session.flush()
    db.session.add_all(
        [
            DonationRefusal(form_id=form.id, reason="token_missing", count=500, at=now - timedelta(days=31)),
            DonationRefusal(form_id=form.id, reason="token_missing", count=3, at=now - timedelta(days=29)),
            RateLimit(
                key="login-ip:203.0.113.1", count=3, window_start=now - timedelta(days=1)
            ),  # ended long ago
            RateLimit(
                key="login-ip:203.0.113.2", count=3, window_start=now - timedelta(minutes=5)
            ),  # counting
            RateLimit(
                key="donate-fail-ip:203.0.113.3",
                count=0,
                window_start=now - timedelta(days=1),
                blocked_until=now + timedelta(minutes=30),
            ),  # still blocked
            LimiterCounter(key="LIMITER/old", count=9, expires_at=time.time() - 3600),
            LimiterCounter(key="LIMITER/now", count=9, expires_at=time.time() + 30),
        ]
    )
    db.session.commit()
    housekeeping()
    db.session.rollback()
    assert [r.count for r in db.session.scalars(select(DonationRefusal))] == [3]
    assert sorted(db.session.scalars(select(RateLimit.key))) == [
        "donate-fail-ip:203.0.113.3",
        "login-ip:203.0.113.2",
    ]
    assert list(db.session.scalars(select(LimiterCounter.key))) == ["LIMITER/now"]
