"""Side effects after the commit: retried when the failure may pass, reported at once when it cannot."""

from __future__ import annotations

import threading
from datetime import timedelta

import pytest
import responses
from db_faults import DatabaseOutage
from smtp_sink import SmtpSink
from sqlalchemy import select
from stripe_world import OneOff, StripeWorld

from admin.extensions import db
from admin.models import Contribution, OutboxTask
from admin.services.donations import receipts
from admin.timeutil import utcnow
from admin.webhooks.ingest import store_event
from admin.worker import queues
from admin.worker.loop import run_once


@pytest.fixture
def world(offline_processor):
    with responses.RequestsMock(assert_all_requests_are_fired=False) as rsps:
        yield StripeWorld(rsps)


def feed(processor, *events: dict) -> None:
    for ev in events:
        store_event(processor, ev)
        run_once()


def metadata_task() -> OutboxTask:
    return db.session.scalar(select(OutboxTask).where(OutboxTask.kind == "customer_metadata"))


def test_customer_metadata_push_is_retried_while_stripe_is_down(app, offline_processor):
    app.config.update(WORKER_BACKOFF_BASE=3600)
    with responses.RequestsMock(assert_all_requests_are_fired=False) as rsps:
        world = StripeWorld(rsps)
        pay = OneOff(world)
        world.fail(rf"/v1/customers/{pay.customer['id']}$", [503] * 4, method="POST")  # a whole gateway call
        store_event(offline_processor, pay.event("charge.succeeded"))
        run_once()
    task = metadata_task()
    assert task.status == "queued" and task.attempts == 1
    assert "customers.update" in task.last_error and "http=503" in task.last_error


def test_customer_metadata_push_for_a_deleted_customer_is_an_error_at_once(app, offline_processor):
    with responses.RequestsMock(assert_all_requests_are_fired=False) as rsps:
        world = StripeWorld(rsps)
        pay = OneOff(world)
        world.fail(rf"/v1/customers/{pay.customer['id']}$", [404], method="POST")  # deleted meanwhile
        store_event(offline_processor, pay.event("charge.succeeded"))
        run_once()
    task = metadata_task()
    assert task.status == "error" and task.attempts == 1 and "No such object" in task.last_error


def test_customer_metadata_push_sends_the_contact_as_it_is_now_or_nothing_once_it_is_gone(
    app, offline_processor
):
    from admin.models import Contact
    from admin.services.records.customer_sync import request_metadata_sync

    with responses.RequestsMock(assert_all_requests_are_fired=False) as rsps:
        world = StripeWorld(rsps)
        kept, gone = (
            Contact(display_name="Ada Lovelace", email="ada@example.org"),
            Contact(email="x@example.org"),
        )
        db.session.add_all([kept, gone])
        db.session.flush()
        request_metadata_sync(offline_processor.id, "cus_kept", kept)
        request_metadata_sync(offline_processor.id, "cus_gone", gone)
        db.session.delete(gone)
        kept.email = (
            "ada.l@example.org"  # changed after the push was asked for: the push sends what is stored
        )
        db.session.commit()
        world.add({"id": "cus_kept", "object": "customer"})
        queues.run_outbox("test")
        assert [(path, form["name"], form["email"]) for path, form in world.updates] == [
            ("/v1/customers/cus_kept", "Ada Lovelace", "ada.l@example.org")
        ]
    statuses = db.session.execute(select(OutboxTask.key, OutboxTask.status).order_by(OutboxTask.id)).all()
    assert [status for _, status in statuses] == ["success", "success"]


# -- receipts through a database outage: sent once, recorded once ------------------------------


def receipt_task() -> OutboxTask:
    return db.session.scalar(select(OutboxTask).where(OutboxTask.kind == "receipt"))


@pytest.fixture
def smtp(app):
    with SmtpSink() as sink:
        app.config.update(SMTP_URL=sink.url, DB_RETRY_BACKOFF_MAX=0.05)
        yield sink


def send_then(monkeypatch, after) -> None:
    """Run ``after()`` right after each receipt has been handed to the mail server."""
    real = receipts.deliver

    def deliver_then(msg, name):
        real(msg, name)
        after()

    monkeypatch.setattr(receipts, "deliver", deliver_then)


@pytest.mark.postgres
@pytest.mark.parametrize("failed_commits", [1, 4])
def test_receipt_whose_commit_fails_after_the_send_is_sent_once_and_recorded(
    app, offline_processor, world, smtp, monkeypatch, backend, failed_commits
):
    with DatabaseOutage(db.engine) as outage:
        send_then(
            monkeypatch, lambda: outage.fail_commits(failed_commits)
        )  # the database goes away after the send
        pay = OneOff(world)
        feed(offline_processor, pay.event("charge.succeeded"))
        assert outage.failures == failed_commits
    db.session.rollback()
    c = db.session.scalar(select(Contribution))
    task = receipt_task()
    assert len(smtp.messages) == 1  # one mail, although its first commits failed
    assert (task.status, task.attempts, task.last_error) == ("success", 1, None)
    assert c.receipt_sent_at is not None
    assert smtp.messages[0]["Message-ID"] == receipts.message_id(c)
    run_once()  # nothing is due again: the task is done, however long ago its lease ran out
    assert len(smtp.messages) == 1


def test_receipt_being_recorded_is_not_claimed_by_another_worker_when_its_lease_ends(
    app, offline_processor, world, smtp, monkeypatch
):
    """The claim's lease (WORKER_LEASE_SECONDS, here 0) runs out while the sender waits for the database to
    record the sent receipt: another worker must not take the task and send it again."""
    app.config.update(WORKER_LEASE_SECONDS=0, SYNC_CUSTOMER_METADATA=False)  # the receipt is the only task
    seen: list[int] = []

    def other_worker_meanwhile() -> None:
        def run() -> None:
            with app.app_context():
                seen.append(queues.run_outbox("another-worker"))
                db.session.remove()

        t = threading.Thread(target=run)
        t.start()
        t.join(30)

    with DatabaseOutage(db.engine) as outage:
        send_then(monkeypatch, lambda: (other_worker_meanwhile(), outage.fail_commits(2)))
        pay = OneOff(world)
        feed(offline_processor, pay.event("charge.succeeded"))
    db.session.rollback()
    assert seen == [0]  # the other worker found nothing to take
    assert len(smtp.messages) == 1 and receipt_task().status == "success"


def test_receipt_of_a_worker_killed_mid_send_is_sent_again_with_the_same_message_id(
    app, offline_processor, world, smtp, caplog
):
    pay = OneOff(world)
    feed(offline_processor, pay.event("charge.succeeded"))
    assert len(smtp.messages) == 1
    c = db.session.scalar(select(Contribution))
    task = receipt_task()
    # what a worker killed between the send and its record leaves: the task "sending", its lease run out
    c.receipt_sent_at = None
    task.status, task.done_at, task.locked_until = "sending", None, utcnow() - timedelta(seconds=1)
    db.session.commit()
    run_once()
    assert receipt_task().status == "success" and len(smtp.messages) == 2
    assert smtp.messages[1]["Message-ID"] == smtp.messages[0]["Message-ID"] == receipts.message_id(c)
    assert "stopped before recording the outcome" in caplog.text


def test_message_id_is_stable_and_differs_between_contributions_and_sites(
    app, offline_processor, world, smtp
):
    pays = [OneOff(world) for _ in range(2)]
    feed(offline_processor, *(p.event("charge.succeeded") for p in pays))
    a, b = db.session.scalars(select(Contribution).order_by(Contribution.id)).all()
    assert [m["Message-ID"] for m in smtp.messages] == [receipts.message_id(a), receipts.message_id(b)]
    assert receipts.message_id(a) == receipts.message_id(a) != receipts.message_id(b)
    assert receipts.message_id(a).startswith(f"<receipt.{a.id}.") and receipts.message_id(a).endswith(
        "@127.0.0.1>"
    )
    first = receipts.message_id(a)
    app.config["BASE_URL"] = "https://donate.example.org"  # another paydesk site
    assert receipts.message_id(a) != first and receipts.message_id(a).endswith("@donate.example.org>")
