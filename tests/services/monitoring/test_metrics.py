"""admin/services/monitoring/metrics.py and /metrics: each figure moves when what it counts happens, and
only internal clients or a bearer token may read them."""

from __future__ import annotations

from datetime import timedelta

import pytest
import stripe_objects as so
from conftest import WEBHOOK_SECRET
from stripe_objects import signed
from stripe_world import Renewal

from admin.extensions import db
from admin.models import Job, OutboxTask, StripeEvent
from admin.services.donations import guard as donation_guard
from admin.timeutil import utcnow
from admin.webhooks.ingest import store_event
from admin.worker.loop import run_once

from .helpers import scrape, value


def _deliver(client, processor, ev: dict, secret: str = WEBHOOK_SECRET):
    body, headers = signed(ev, secret)
    return client.post(f"/webhooks/stripe/{processor.id}", data=body, headers=headers)


def test_webhook_deliveries_are_counted_by_result(client, offline_processor):
    before = scrape(client)
    ev = so.event("customer.updated", so.customer())
    assert _deliver(client, offline_processor, ev).status_code == 200
    assert _deliver(client, offline_processor, ev).json["duplicate"] is True
    assert _deliver(client, offline_processor, ev, secret="whsec_wrong").status_code == 400
    assert client.post("/webhooks/stripe/999999").status_code == 404
    after = scrape(client)
    for result, n in (("accepted", 1), ("duplicate", 1), ("bad_signature", 1), ("unknown_processor", 1)):
        name = "paydesk_webhook_deliveries_total"
        assert value(after, name, result=result) - value(before, name, result=result) == n, result


def test_queue_depth_and_the_oldest_queued_event(client, offline_processor):
    store_event(offline_processor, so.event("customer.updated", so.customer()))
    store_event(offline_processor, so.event("customer.updated", so.customer()))
    row = db.session.query(StripeEvent).first()
    row.next_attempt_at = utcnow() - timedelta(seconds=300)  # has waited five minutes for a worker
    db.session.commit()
    text = scrape(client)
    assert value(text, "paydesk_event_queue", status="queued") == 2
    assert 299 <= value(text, "paydesk_event_queue_oldest_age_seconds") < 330
    assert value(text, "paydesk_database_up") == 1
    run_once()
    text = scrape(client)
    assert value(text, "paydesk_event_queue", status="queued") == 0
    assert value(text, "paydesk_event_queue_oldest_age_seconds") == 0


def test_processed_events_handler_durations_and_stripe_retries(client, offline_processor, world):
    ren = Renewal(world)
    before = scrape(client)
    world.fail(rf"/v1/invoices/{ren.invoice['id']}$", [503])  # one transient failure, retried by the gateway
    store_event(
        offline_processor, ren.events["invoice.paid"], source="replay"
    )  # replays re-fetch from Stripe
    run_once()
    after = scrape(client)

    def delta(name, **labels):
        return value(after, name, **labels) - value(before, name, **labels)

    assert delta("paydesk_events_processed_total", type="invoice.paid", status="success") == 1
    assert delta("paydesk_event_handler_duration_seconds_count", type="invoice.paid") == 1
    assert delta("paydesk_event_handler_duration_seconds_sum", type="invoice.paid") > 0
    assert delta("paydesk_stripe_requests_total", operation="invoices.retrieve", outcome="transient") == 1
    assert delta("paydesk_stripe_requests_total", operation="invoices.retrieve", outcome="ok") == 1
    assert delta("paydesk_stripe_retries_total", operation="invoices.retrieve") == 1


def test_outbox_backlog_jobs_and_donation_refusals(app, client, offline_processor):
    before = scrape(client)
    db.session.add_all(
        [
            OutboxTask(kind="receipt", key="receipt:1", status="queued", payload={}),
            OutboxTask(kind="receipt", key="receipt:2", status="error", payload={}),
            OutboxTask(kind="receipt", key="receipt:3", status="success", payload={}),
            Job(kind="events.replay", title="Replay", params={}, actor="cli", status="running"),
            Job(kind="events.replay", title="Replay", params={}, actor="cli", status="done"),
        ]
    )
    db.session.commit()
    donation_guard.refuse("honeypot", None, "192.0.2.1")
    donation_guard.refuse("honeypot", None, "192.0.2.1")
    text = scrape(client)
    assert value(text, "paydesk_outbox_backlog", kind="receipt", status="queued") == 1
    assert value(text, "paydesk_outbox_backlog", kind="receipt", status="error") == 1
    assert value(text, "paydesk_outbox_backlog", kind="receipt", status="success") == 0  # done is not backlog
    assert value(text, "paydesk_jobs", kind="events.replay", status="running") == 1
    assert value(text, "paydesk_jobs", kind="events.replay", status="done") == 1
    name = "paydesk_donation_refusals_total"
    assert value(text, name, reason="honeypot") - value(before, name, reason="honeypot") == 2


def test_metrics_say_when_the_database_is_down(app, client):
    db.session.remove()
    with db.engine.begin() as conn:  # one of the tables a scrape reads is gone: its queries fail
        conn.exec_driver_sql("DROP TABLE worker_heartbeat")
    text = scrape(client)  # the process's own counters are still served
    assert value(text, "paydesk_database_up") == 0
    assert "paydesk_webhook_deliveries_total" in text


# -- who may read /metrics ---------------------------------------------------------------------------------

OUTSIDE = "203.0.113.9"  # a documentation address: not internal


@pytest.mark.parametrize(
    ("addr", "headers", "token", "status"),
    [
        ("127.0.0.1", {}, None, 200),
        ("10.1.2.3", {}, None, 200),
        ("192.168.0.20", {}, "s3cret-token", 200),
        ("::1", {}, None, 200),
        (OUTSIDE, {}, None, 401),
        (OUTSIDE, {}, "s3cret-token", 401),
        (OUTSIDE, {"Authorization": "Bearer wrong-token"}, "s3cret-token", 401),
        (OUTSIDE, {"Authorization": "Bearer s3cret-token"}, "s3cret-token", 200),
        (OUTSIDE, {"Authorization": "Bearer "}, None, 401),  # no token configured: no token opens it
        # forwarded by a proxy paydesk does not trust for addresses: the peer is the proxy, not the client
        ("127.0.0.1", {"X-Forwarded-For": OUTSIDE}, None, 401),
    ],
)
def test_metrics_answer_internal_clients_or_the_bearer_token(app, client, addr, headers, token, status):
    app.config["METRICS_TOKEN"] = token
    response = client.get("/metrics", headers=headers, environ_base={"REMOTE_ADDR": addr})
    assert response.status_code == status
    if status == 401:
        assert response.headers["WWW-Authenticate"].startswith("Bearer")
        assert "paydesk_" not in response.get_data(as_text=True)


def test_behind_a_trusted_proxy_the_forwarded_client_address_decides(tmp_path):
    from conftest import make_app

    app = make_app(f"sqlite:///{tmp_path / 'proxy.sqlite3'}", tmp_path, TRUSTED_PROXIES=1)
    with app.app_context():
        db.create_all()
        client = app.test_client()
        via_proxy = {"REMOTE_ADDR": "127.0.0.1"}
        assert (
            client.get("/metrics", headers={"X-Forwarded-For": OUTSIDE}, environ_base=via_proxy).status_code
            == 401
        )
        assert (
            client.get(
                "/metrics", headers={"X-Forwarded-For": "10.0.0.7"}, environ_base=via_proxy
            ).status_code
            == 200
        )
        db.session.remove()
