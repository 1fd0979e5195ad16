"""The pipeline's per-event bookkeeping: events of a type with no handler are ignored together, and end exactly as
one processed on its own does (status, reason, attempt row, metrics, log line)."""

from __future__ import annotations

import io
import json
import logging
from datetime import timedelta

import pytest
import stripe_objects as so
from db_faults import DatabaseOutage
from sqlalchemy import event, select, text
from stripe_world import OneOff

from admin.extensions import db
from admin.models import EventAttempt, Payment, StripeEvent
from admin.services.monitoring import logs, metrics
from admin.webhooks import pipeline
from admin.webhooks.ingest import store_event
from admin.worker import queues
from admin.worker.loop import run_once

from .conftest import count


def unhandled(kind: str = "issuing_card.created") -> dict:
    return so.event(kind, so.obj("issuing.card", id=so.new_id("ic")))


def seen(row: StripeEvent) -> tuple:
    """What staff see of a finished event and its attempts (the event page), times left out."""
    attempts = db.session.scalars(
        select(EventAttempt).where(EventAttempt.event_row_id == row.id).order_by(EventAttempt.id)
    ).all()
    return (
        row.status,
        row.status_reason,
        row.last_error,
        row.attempts,
        row.locked_by,
        row.locked_until,
        row.processed_at is not None,
        [(a.outcome, a.message, a.actor, a.stripe_request_ids, a.finished_at is not None) for a in attempts],
    )


def processed_alone(processor, ev: dict) -> tuple:
    """``ev`` claimed and processed one event at a time, as a replay or the pipeline before bulk ignoring did."""
    store_event(processor, ev)
    (claim,) = queues.claim_events("alone", 1)
    assert pipeline.process(claim, "alone") == "ignored"
    return seen(db.session.scalar(select(StripeEvent).where(StripeEvent.event_id == ev["id"])))


@pytest.mark.postgres
def test_unhandled_events_in_a_batch_end_as_one_processed_alone(offline_processor, world):
    kinds = ("issuing_card.created", "customer.created")
    alone = {kind: processed_alone(offline_processor, unhandled(kind)) for kind in kinds}
    assert alone["customer.created"][:2] == ("ignored", "paydesk has no handler for customer.created")
    pay = OneOff(world)
    evs = [unhandled(kinds[0]), unhandled(kinds[1]), unhandled(kinds[0])]
    for ev in evs[:2]:
        store_event(offline_processor, ev)
    paid = pay.event("charge.succeeded")
    store_event(offline_processor, paid)
    store_event(offline_processor, evs[2])
    run_once()
    rows = {r.event_id: r for r in db.session.scalars(select(StripeEvent))}
    for ev in evs:
        assert seen(rows[ev["id"]]) == alone[ev["type"]]
    assert rows[paid["id"]].status == "success" and count(Payment) == 1


@pytest.mark.postgres
def test_unhandled_events_are_ignored_with_one_update_and_one_insert(offline_processor):
    for _ in range(5):
        store_event(offline_processor, unhandled())
    statements: list[str] = []

    def note(conn, cursor, statement, *args):
        statements.append(" ".join(statement.split()[:3]))

    event.listen(db.engine, "before_cursor_execute", note)
    try:
        run_once()
    finally:
        event.remove(db.engine, "before_cursor_execute", note)
    updates = [s for s in statements if s.startswith("UPDATE stripe_event")]
    assert len(updates) == 2  # the claim's, then all five ignored at once
    assert statements.count("INSERT INTO event_attempt") == 1  # their five attempts
    assert count(EventAttempt) == 5 and count(StripeEvent, StripeEvent.status == "ignored") == 5


def test_each_ignored_event_is_counted_and_logged(app, offline_processor):
    stream = io.StringIO()
    app.config["LOG_FORMAT"] = "json"
    logs.configure(app)
    handler = next(h for h in logging.getLogger().handlers if getattr(h, "_paydesk_json", False))
    handler.setStream(stream)
    counter = metrics.EVENTS_PROCESSED.labels("other", "ignored")
    before = counter._value.get()
    try:
        evs = [unhandled("paydesk.test_type") for _ in range(3)]
        for ev in evs:
            store_event(offline_processor, ev)
        run_once()
    finally:
        logging.getLogger().removeHandler(handler)
        app.config["LOG_FORMAT"] = "text"
        logs.configure(app)
    lines = [json.loads(x) for x in stream.getvalue().splitlines()]
    lines = [x for x in lines if x["logger"] == "paydesk.events"]
    assert sorted(x["event_id"] for x in lines) == sorted(ev["id"] for ev in evs)
    assert all(
        x["status"] == "ignored"
        and x["attempt"] == 1
        and x["event_type"] == "paydesk.test_type"
        and x["processor"] == offline_processor.id
        and x["duration_ms"] >= 0
        and "error" not in x
        for x in lines
    )
    assert counter._value.get() - before == 3


def test_an_unhandled_event_out_of_attempts_still_gives_up(app, offline_processor):
    store_event(offline_processor, unhandled())
    row = db.session.scalar(select(StripeEvent))
    row.attempts = app.config["WORKER_MAX_ATTEMPTS"]  # the claim makes one more: past the limit
    db.session.commit()
    run_once()
    assert row.status == "error" and row.last_error.startswith("gave up after")


def test_database_away_while_ignoring_together_hands_the_batch_back(
    app, offline_processor, monkeypatch, caplog
):
    app.config.update(DB_RETRY_BACKOFF_MAX=0.05)
    for _ in range(3):
        store_event(offline_processor, unhandled())
    real = pipeline.ignore_unhandled

    with DatabaseOutage(db.engine) as outage:

        def ignore_as_the_database_goes(claims, worker):
            outage.fail_next(2)  # the ignoring and the first try to hand the batch back fail
            return real(claims, worker)

        monkeypatch.setattr(pipeline, "ignore_unhandled", ignore_as_the_database_goes)
        queues.run_events("w1")
        assert outage.failures == 2
    monkeypatch.undo()
    assert "3 claimed event(s) handed back to the queue" in caplog.text
    rows = db.session.scalars(select(StripeEvent).order_by(StripeEvent.id)).all()
    assert [r.status for r in rows] == ["queued"] * 3 and count(EventAttempt) == 0
    run_once()
    assert [r.status for r in rows] == ["ignored"] * 3 and count(EventAttempt) == 3


@pytest.mark.postgres
def test_a_failure_ignoring_together_falls_back_to_one_at_a_time(offline_processor, monkeypatch, caplog):
    for _ in range(2):
        store_event(offline_processor, unhandled())
    monkeypatch.setattr(pipeline, "_IGNORE", text("SELECT no_such_column FROM stripe_event"))
    run_once()
    assert "one by one instead" in caplog.text
    assert count(StripeEvent, StripeEvent.status == "ignored") == 2 and count(EventAttempt) == 2


@pytest.mark.parametrize("given", [None, "staff@example.org"])
def test_a_replayed_unhandled_event_is_ignored_by_the_pipeline_itself(offline_processor, given):
    """A replay takes its one row (no claim columns): it is never part of a batch."""
    store_event(offline_processor, unhandled())
    row = db.session.scalar(select(StripeEvent))
    held = pipeline.take(row, "replayer", lease=timedelta(minutes=5))
    assert pipeline.ignore_unhandled([held], "replayer") == set()
    assert pipeline.process(held, "replayer", actor=given) == "ignored"
    (attempt,) = db.session.scalars(select(EventAttempt)).all()
    assert attempt.actor == given and attempt.outcome == "ignored"


@pytest.mark.postgres
def test_an_event_taken_by_another_worker_meanwhile_is_left_to_it(offline_processor, world):
    """The claim's copy of the row is used; if another worker took the row after the lease ran out, the
    run's end sees it: nothing the handler wrote is kept, no attempt is recorded, the row stays theirs."""
    pay = OneOff(world)
    store_event(offline_processor, pay.event("charge.succeeded"))
    (mine,) = queues.claim_events("w1", 1)
    row = db.session.scalar(select(StripeEvent))
    row.locked_by = "w2"  # w1 took too long: w2 claimed it after the lease
    db.session.commit()
    assert pipeline.process(mine, "w1") is None
    assert (row.status, row.locked_by, row.attempts) == ("processing", "w2", 1)
    assert count(Payment) == 0 and count(EventAttempt) == 0
