"""Outgoing notifications reach a real HTTP receiver, signed so that the README's snippet verifies them;
a receiver that fails is retried with backoff, marked failed after the window, and resent by hand."""

from __future__ import annotations

import copy
import json
from datetime import timedelta

import pytest
from notify_receiver import Receiver, readme_verify
from sqlalchemy import func, select
from stripe_world import OneOff

from admin.errors import ServiceError
from admin.extensions import db
from admin.models import AuditLog, Contribution, ContributionRecur, NotificationDelivery, OutboxTask
from admin.services.notifications import delivery, endpoints
from admin.timeutil import utcnow
from admin.webhooks.ingest import store_event
from admin.worker.loop import run_once


@pytest.fixture
def allow_private(app):
    app.config["NOTIFY_ALLOW_PRIVATE"] = True
    return app


def feed(processor, ev: dict) -> None:
    store_event(processor, ev, source="webhook")
    run_once()


def deliveries() -> list[delivery.DeliveryRow]:
    db.session.rollback()
    return [
        delivery.find_delivery(i)
        for i in db.session.scalars(select(NotificationDelivery.id).order_by(NotificationDelivery.id))
    ]


@pytest.mark.postgres
def test_a_completed_contribution_reaches_the_receiver_signed_as_the_readme_says(
    allow_private, offline_processor, world
):
    verify = readme_verify()
    with Receiver() as rx:
        made = endpoints.add_endpoint(rx.url)
        pay = OneOff(world, amount=2500, fee=103)
        feed(offline_processor, pay.event("payment_intent.succeeded"))
        assert len(rx.received) == 1
        headers, body, path = rx.received[0]
    assert path == "/hooks/paydesk?from=test"
    assert verify(made.secret, headers["Paydesk-Signature"], body)
    assert not verify("pdwhsec_someone-else", headers["Paydesk-Signature"], body)
    assert not verify(made.secret, headers["Paydesk-Signature"], body + b" ")
    sent = json.loads(body)
    c = db.session.scalar(select(Contribution))
    assert sent["type"] == "contribution.completed" and sent["id"].startswith("ntf_")
    want = {
        "object": "contribution",
        "id": c.id,
        "status": "Completed",
        "amount": 2500,
        "currency": "usd",
        "trxn_id": pay.charge["id"],
    }
    assert {k: sent["data"]["object"][k] for k in want} == want
    (row,) = deliveries()
    assert (row.status, row.attempts, row.delivery.response_code) == ("delivered", 1, 200)
    assert row.delivery.delivered_at is not None


@pytest.mark.postgres
def test_a_failing_receiver_is_retried_with_backoff_then_failed_then_resent(allow_private, offline_processor):
    with Receiver(status=500) as rx:
        hook = endpoints.add_endpoint(rx.url).endpoint
        c = Contribution(processor_id=offline_processor.id, amount=1000, currency="eur", status="Pending")
        db.session.add(c)
        db.session.commit()
        c.status = "Failed"
        db.session.commit()
        run_once()
        (row,) = deliveries()
        assert (row.status, row.attempts, row.delivery.response_code) == ("retrying", 1, 500)
        assert "HTTP 500" in row.error
        first_wait = row.task.next_attempt_at - row.delivery.last_attempt_at
        assert timedelta(seconds=55) < first_wait < timedelta(seconds=65)  # NOTIFY_BACKOFF_BASE
        assert row.task.retry_until - row.task.created_at == timedelta(days=3)
        run_once()
        assert len(rx.received) == 1  # not due yet: nothing sent

        # time passes: the next attempt is due now; it fails again and waits twice as long
        row.task.next_attempt_at = utcnow() - timedelta(seconds=1)
        db.session.commit()
        run_once()
        (row,) = deliveries()
        assert (row.status, row.attempts, len(rx.received)) == ("retrying", 2, 2)
        assert (
            timedelta(seconds=115)
            < row.task.next_attempt_at - row.delivery.last_attempt_at
            < timedelta(seconds=125)
        )

        # three days later: the last attempt fails and the delivery is failed for good
        row.task.next_attempt_at = utcnow() - timedelta(seconds=1)
        row.task.retry_until = utcnow() + timedelta(seconds=30)  # less than the next backoff away
        db.session.commit()
        run_once()
        (row,) = deliveries()
        assert (row.status, row.attempts, len(rx.received)) == ("failed", 3, 3)
        run_once()
        assert len(rx.received) == 3

        # the receiver is fixed; an admin resends: the same notification, a new signature, delivered
        rx.status = 204
        delivery.resend(row.delivery.id)
        with pytest.raises(ServiceError, match="queued"):  # a second click before it is sent: refused
            delivery.resend(row.delivery.id)
        run_once()
        (row,) = deliveries()
        assert (row.status, row.attempts, row.delivery.response_code) == ("delivered", 1, 204)
        assert rx.received[-1][1] == rx.received[0][1]  # the same body (same id): receivers drop repeats
    sent = json.loads(rx.received[0][1])
    assert sent["type"] == "contribution.failed" and sent["data"]["previous_attributes"] == {
        "status": "Pending"
    }
    assert hook.id == row.delivery.endpoint_id
    assert (
        db.session.scalar(
            select(func.count()).select_from(AuditLog).where(AuditLog.action == "notification.resend")
        )
        == 1
    )


def test_both_secrets_sign_while_a_secret_is_rotated(allow_private, offline_processor):
    verify = readme_verify()
    with Receiver() as rx:
        old = endpoints.add_endpoint(rx.url).secret
        new = endpoints.rotate_secret(1, keep_old_hours=24).secret
        db.session.add(
            ContributionRecur(
                processor_id=offline_processor.id, subscription_id="sub_rot", status="In Progress"
            )
        )
        db.session.commit()
        run_once()
        endpoints.rotate_secret(1, keep_old_hours=0)
        newest = db.session.get(endpoints.NotificationEndpoint, 1)
        db.session.get(ContributionRecur, 1).status = "Cancelled"
        db.session.commit()
        run_once()
    (h1, b1, _), (h2, b2, _) = rx.received
    assert h1["Paydesk-Signature"].count("v1=") == 2
    assert verify(old, h1["Paydesk-Signature"], b1) and verify(new, h1["Paydesk-Signature"], b1)
    assert h2["Paydesk-Signature"].count("v1=") == 1  # rotated again with 0 hours: only the newest signs
    assert not verify(old, h2["Paydesk-Signature"], b2) and not verify(new, h2["Paydesk-Signature"], b2)
    assert newest.previous_expires_at is None
    second = json.loads(b2)
    assert second["type"] == "recurring.status_changed"
    assert second["data"]["object"]["status"] == "Cancelled"
    assert second["data"]["previous_attributes"] == {"status": "In Progress"}


def test_a_refund_notifies_and_only_chosen_types_are_sent(allow_private, offline_processor, world):
    with Receiver() as everything, Receiver() as refunds_only:
        endpoints.add_endpoint(everything.url)
        endpoints.add_endpoint(refunds_only.url, ["contribution.refunded"])
        pay = OneOff(world, amount=3000)
        feed(offline_processor, pay.event("payment_intent.succeeded"))
        pay.refund(world, 1000)
        feed(offline_processor, pay.event("charge.refunded", copy.deepcopy(pay.charge)))
    types = [json.loads(b)["type"] for _, b, _ in everything.received]
    assert types == ["contribution.completed", "contribution.refunded"]
    (only,) = [json.loads(b) for _, b, _ in refunds_only.received]
    assert only["type"] == "contribution.refunded"
    assert only["data"]["object"]["refunded_amount"] == 1000
    assert only["data"]["previous_attributes"]["refunded_amount"] == 0


def test_a_change_rolled_back_or_unchanged_notifies_no_one(allow_private, offline_processor):
    with Receiver() as rx:
        endpoints.add_endpoint(rx.url)
        c = Contribution(processor_id=offline_processor.id, amount=500, currency="usd", status="Completed")
        db.session.add(c)
        db.session.flush()
        db.session.rollback()
        c = Contribution(processor_id=offline_processor.id, amount=500, currency="usd", status="Completed")
        db.session.add(c)
        db.session.commit()
        db.session.expire_all()
        c.status = "Completed"  # the same status again (an event replayed): no new notification
        c.description = "noted"
        db.session.commit()
        run_once()
    assert len(rx.received) == 1
    assert db.session.scalar(select(func.count()).select_from(NotificationDelivery)) == 1


@pytest.mark.postgres
def test_the_delivery_is_queued_in_the_transaction_of_the_change(allow_private, offline_processor):
    endpoints.add_endpoint("http://127.0.0.1:9/never")
    c = Contribution(processor_id=offline_processor.id, amount=500, currency="usd", status="Completed")
    db.session.add(c)
    db.session.flush()
    assert db.session.scalar(select(func.count()).select_from(OutboxTask)) == 0  # not before the commit
    db.session.commit()
    (task,) = db.session.scalars(select(OutboxTask).where(OutboxTask.kind == "notification"))
    d = db.session.scalar(select(NotificationDelivery))
    assert task.key == f"notification:{d.id}" and d.task_id == task.id and task.status == "queued"


def test_only_changes_that_notify_and_survive_the_transaction_are_queued(allow_private, offline_processor):
    kept = Contribution(processor_id=offline_processor.id, amount=500, currency="usd", status="Pending")
    gone = Contribution(processor_id=offline_processor.id, amount=700, currency="usd", status="Pending")
    r = ContributionRecur(
        processor_id=offline_processor.id,
        subscription_id="sub_n1",
        amount=500,
        currency="usd",
        status="Pending",
    )
    db.session.add_all([kept, gone, r])
    db.session.commit()
    endpoints.add_endpoint("http://127.0.0.1:9/never")
    kept.status = gone.status = "Completed"
    r.status, r.failure_count = "In Progress", 0
    db.session.flush()  # noted here...
    db.session.delete(gone)  # ...and deleted before the commit: no one hears of it
    kept.description = "a change that notifies nothing"
    db.session.commit()
    rows = db.session.scalars(select(NotificationDelivery).order_by(NotificationDelivery.id)).all()
    assert sorted((d.type, d.object_id) for d in rows) == sorted(
        [("contribution.completed", kept.id), ("recurring.status_changed", r.id)]
    )
    bodies = {d.type: json.loads(d.body)["data"] for d in rows}
    assert bodies["contribution.completed"]["previous_attributes"] == {"status": "Pending"}
    assert bodies["recurring.status_changed"]["previous_attributes"] == {"status": "Pending"}
    assert bodies["recurring.status_changed"]["object"]["status"] == "In Progress"


def test_a_url_added_with_a_change_in_one_transaction_is_sent_that_change(allow_private, offline_processor):
    assert endpoints.wanting(db.session) == []  # "nobody listens", remembered
    db.session.rollback()
    c = Contribution(processor_id=offline_processor.id, amount=500, currency="usd", status="Completed")
    db.session.add(c)
    endpoints.add_endpoint("http://127.0.0.1:9/never")  # its flush clears the memory; one commit for both
    (d,) = db.session.scalars(select(NotificationDelivery)).all()
    assert (d.type, d.object_id) == ("contribution.completed", c.id)


@pytest.mark.parametrize(
    "url, message",
    [
        ("ftp://example.org/x", "https://"),
        ("https://user:pw@example.org/x", "no user name"),
        ("http://127.0.0.1:8080/hook", "private, loopback or reserved"),
        ("http://10.1.2.3/hook", "private, loopback or reserved"),
        ("http://[::1]/hook", "private, loopback or reserved"),
        ("http://169.254.169.254/latest/meta-data", "private, loopback or reserved"),
        ("http://localhost/hook", "private, loopback or reserved"),
    ],
)
def test_receivers_must_be_public_web_addresses(app, url, message):
    with pytest.raises(ServiceError, match=message) as err:
        endpoints.add_endpoint(url)
    assert err.value.field == "url"
    assert db.session.scalar(select(func.count()).select_from(endpoints.NotificationEndpoint)) == 0


def test_an_address_that_turned_private_is_not_sent_to(allow_private, offline_processor):
    with Receiver() as rx:
        endpoints.add_endpoint(rx.url)
        db.session.add(
            Contribution(processor_id=offline_processor.id, amount=5, currency="usd", status="Completed")
        )
        db.session.commit()
        allow_private.config["NOTIFY_ALLOW_PRIVATE"] = False  # as if the name now resolved to 127.0.0.1
        run_once()
    assert rx.received == []
    (row,) = deliveries()
    assert row.status == "failed" and "private" in row.error


@pytest.mark.postgres
def test_the_history_filter_still_tells_delivered_from_failed_after_retention(
    allow_private, offline_processor
):
    """Retention deletes finished outbox tasks (30 days after a delivery, 90 after a failure) long before the
    history goes: whether a notification was delivered is kept on its own row, and one whose task went
    without delivering it had failed."""
    from admin.services.core import retention

    with Receiver() as rx:
        hook = endpoints.add_endpoint(rx.url)
        db.session.add(
            Contribution(processor_id=offline_processor.id, amount=5, currency="usd", status="Completed")
        )
        db.session.commit()
        run_once()
        allow_private.config["NOTIFY_ALLOW_PRIVATE"] = False  # the next one fails for good
        db.session.add(
            Contribution(processor_id=offline_processor.id, amount=6, currency="usd", status="Completed")
        )
        db.session.commit()
        run_once()
    delivered, failed = deliveries()
    assert (delivered.status, failed.status) == ("delivered", "failed")

    def listed(*status: str) -> list[int]:
        db.session.rollback()
        page = delivery.delivery_page(hook.endpoint.id, delivery.DeliveryFilter(status=list(status)))
        return [row.delivery.id for row in page.rows]

    before = {s: listed(s) for s in delivery.DELIVERY_STATUSES}
    long_ago = utcnow() - timedelta(days=200)
    db.session.execute(
        OutboxTask.__table__.update().values(next_attempt_at=long_ago, done_at=long_ago, created_at=long_ago)
    )
    db.session.commit()
    gone = {o.rule.name: o.deleted for o in retention.run(only=("outbox_done", "outbox_failed"))}
    assert gone == {"outbox_done": 1, "outbox_failed": 1}
    assert db.session.scalar(select(func.count()).select_from(OutboxTask)) == 0

    after = {s: listed(s) for s in delivery.DELIVERY_STATUSES}
    assert after == before
    assert (after["delivered"], after["failed"]) == ([delivered.delivery.id], [failed.delivery.id])
    assert [r.status for r in deliveries()] == ["delivered", "failed"]


def test_no_url_is_remembered_briefly_and_forgotten_when_a_url_is_added(
    allow_private, offline_processor, world
):
    with Receiver() as rx:
        feed(offline_processor, OneOff(world, amount=1000).event("payment_intent.succeeded"))
        assert endpoints.wanting(db.session) == []  # remembered: "nobody listens"
        db.session.rollback()
        endpoints.add_endpoint(rx.url)  # clears it in this process at once
        assert [types for _id, types in endpoints.wanting(db.session)][0][0] == "contribution.completed"
        feed(offline_processor, OneOff(world, amount=2000).event("payment_intent.succeeded"))
        assert len(rx.received) == 1
