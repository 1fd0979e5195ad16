"""An idle worker is woken as soon as an event is stored (PostgreSQL LISTEN/NOTIFY), not at its next poll; the
poll stays the fallback (SQLite, a lost listening connection)."""

from __future__ import annotations

import logging
import threading
import time

import psycopg
import pytest
import stripe_objects as so
from sqlalchemy import create_engine, select

from admin.dbutil import EVENTS_CHANNEL
from admin.extensions import db
from admin.models import StripeEvent
from admin.webhooks.ingest import store_event
from admin.worker import wakeup
from admin.worker.loop import run_forever


def unhandled() -> dict:
    return so.event("issuing_card.created", so.obj("issuing.card", id=so.new_id("ic")))


def test_a_ring_wakes_a_waiting_thread_before_its_timeout():
    bell = wakeup.Doorbell()
    woke: list[float] = []

    def idle():
        started = time.monotonic()
        bell.wait(30)
        woke.append(time.monotonic() - started)

    thread = threading.Thread(target=idle)
    thread.start()
    time.sleep(0.2)
    bell.ring()
    thread.join(5)
    assert woke and woke[0] < 5


def test_a_ring_with_no_one_waiting_lets_the_next_waiter_go_at_once_and_only_once():
    bell = wakeup.Doorbell()
    bell.ring()
    bell.ring()  # no one waits: one ring is kept, not two
    assert bell.wait(5) is True
    started = time.monotonic()
    assert bell.wait(0.05) is False  # nothing rang: the poll's timeout
    assert time.monotonic() - started >= 0.05


def test_a_closed_doorbell_never_holds_a_thread():
    bell = wakeup.Doorbell()
    bell.close()
    started = time.monotonic()
    assert bell.wait(30) and bell.wait(30)
    assert time.monotonic() - started < 5


def test_sqlite_is_polled_no_listener(app):
    assert wakeup.start_listening(db.engine, wakeup.Doorbell(), threading.Event()) is None


def _listening(app) -> psycopg.Connection:
    url = db.engine.url.set(drivername="postgresql").render_as_string(hide_password=False)
    conn = psycopg.connect(url, autocommit=True)
    conn.execute(f"LISTEN {EVENTS_CHANNEL}")
    return conn


@pytest.mark.postgres_only
def test_storing_a_queued_event_notifies_once_a_duplicate_or_logged_event_never(app, offline_processor):
    conn = _listening(app)
    try:
        ev = unhandled()
        assert store_event(offline_processor, ev)
        assert [n.channel for n in conn.notifies(timeout=2)] == [EVENTS_CHANNEL]
        assert not store_event(offline_processor, ev)  # a second delivery stores nothing, wakes no one
        assert store_event(offline_processor, unhandled(), source="populate", status="logged")
        assert list(conn.notifies(timeout=0.5)) == []
    finally:
        conn.close()


@pytest.mark.postgres_only
def test_an_idle_worker_picks_up_a_new_event_at_once_not_at_its_next_poll(app, offline_processor):
    app.config.update(WORKER_IDLE_SLEEP=60.0)  # a poll would come a minute later
    stop = threading.Event()
    thread = threading.Thread(target=run_forever, args=(app, 2, stop), daemon=True)
    thread.start()
    try:
        time.sleep(1.5)  # both threads found nothing and wait; the listener is listening
        ev = unhandled()
        stored_at = time.monotonic()
        store_event(offline_processor, ev)
        status = None
        while time.monotonic() - stored_at < 20 and status != "ignored":
            time.sleep(0.05)
            db.session.rollback()
            status = db.session.scalar(select(StripeEvent.status).where(StripeEvent.event_id == ev["id"]))
        assert status == "ignored" and time.monotonic() - stored_at < 10
    finally:
        stopping = time.monotonic()
        stop.set()
        thread.join(30)
    assert not thread.is_alive() and time.monotonic() - stopping < 10  # no thread sat out its minute


def test_a_listener_that_cannot_connect_keeps_trying_until_the_worker_stops(caplog):
    caplog.set_level(logging.INFO, logger="admin.worker.wakeup")
    engine = create_engine("postgresql+psycopg://nobody@127.0.0.1:9/none?connect_timeout=1")
    stop = threading.Event()
    thread = wakeup.start_listening(engine, wakeup.Doorbell(), stop)
    assert thread is not None
    deadline = time.monotonic() + 10
    while "polling meanwhile" not in caplog.text and time.monotonic() < deadline:
        time.sleep(0.05)
    stop.set()
    thread.join(10)
    assert "worker not listening for new events (polling meanwhile)" in caplog.text
    assert not thread.is_alive()
