"""POST /webhooks/stripe/<ppid>: verify, store once, answer; refuse anything unverified without a trace."""

from __future__ import annotations

import json
import threading
import time

import pytest
import stripe_objects as so
from conftest import WEBHOOK_SECRET
from sqlalchemy import select
from stripe_objects import signed

from admin.extensions import db
from admin.models import Contact, Contribution, Payment, StripeEvent, WebhookRejection
from admin.services.processors import update_processor

from .conftest import count


def url(processor) -> str:
    return f"/webhooks/stripe/{processor.id}"


def no_business_rows() -> bool:
    return count(StripeEvent) == 0 and count(Contribution) == 0 and count(Payment) == 0 and count(Contact) == 0


def test_valid_event_is_stored_queued_with_the_ids_it_touches(client, offline_processor):
    ch = so.charge(customer="cus_A", payment_intent="pi_A")
    ev = so.event("charge.succeeded", ch)
    body, headers = signed(ev, WEBHOOK_SECRET)
    resp = client.post(url(offline_processor), data=body, headers=headers)
    assert resp.status_code == 200 and resp.json == {"received": True, "duplicate": False}
    row = db.session.scalar(select(StripeEvent))
    assert (row.event_id, row.type, row.status, row.source) == (ev["id"], "charge.succeeded", "queued", "webhook")
    assert (row.charge_id, row.payment_intent_id, row.customer_id) == (ch["id"], "pi_A", "cus_A")
    assert json.loads(row.raw) == ev


@pytest.mark.parametrize("case, reason", [
    ("wrong secret", "signature mismatch"),
    ("stale", "timestamp outside tolerance"),
    ("missing", "missing Stripe-Signature header"),
    ("malformed", "malformed Stripe-Signature header"),
    ("tampered", "signature mismatch"),
])
def test_bad_signatures_get_400_and_change_nothing(client, offline_processor, case, reason, caplog):
    ev = so.event("charge.succeeded", so.charge(customer="cus_B"))
    secret = "whsec_not_ours" if case == "wrong secret" else WEBHOOK_SECRET
    ts = int(time.time()) - 301 if case == "stale" else None
    body, headers = signed(ev, secret, ts)
    if case == "missing":
        headers.pop("Stripe-Signature")
    elif case == "malformed":
        headers["Stripe-Signature"] = "garbage"
    elif case == "tampered":
        body = body.replace('"amount": 2500', '"amount": 1')
    resp = client.post(url(offline_processor), data=body, headers=headers)
    assert resp.status_code == 400 and resp.json["error"] == reason
    assert no_business_rows()
    counter = db.session.scalar(select(WebhookRejection).filter_by(processor_id=offline_processor.id))
    assert counter.count == 1 and counter.reason == reason
    logged = caplog.text
    assert reason in logged and WEBHOOK_SECRET not in logged and body not in logged


def test_rotated_secret_is_accepted_while_both_are_active(client, offline_processor):
    update_processor(offline_processor, add_webhook_secrets=["whsec_next_one"])
    for secret in (WEBHOOK_SECRET, "whsec_next_one"):
        body, headers = signed(so.event("customer.updated", so.customer()), secret)
        assert client.post(url(offline_processor), data=body, headers=headers).status_code == 200
    update_processor(offline_processor, remove_webhook_secrets=[WEBHOOK_SECRET])  # applies at once
    body, headers = signed(so.event("customer.updated", so.customer()), WEBHOOK_SECRET)
    assert client.post(url(offline_processor), data=body, headers=headers).status_code == 400
    assert count(StripeEvent) == 2


def test_unknown_processor_is_404(client, offline_processor):
    body, headers = signed(so.event("customer.updated", so.customer()), WEBHOOK_SECRET)
    assert client.post("/webhooks/stripe/999", data=body, headers=headers).status_code == 404


def test_body_over_one_mebibyte_is_413(client, offline_processor):
    big = so.customer(description="x" * (1024 * 1024))
    body, headers = signed(so.event("customer.updated", big), WEBHOOK_SECRET)
    assert client.post(url(offline_processor), data=body, headers=headers).status_code == 413
    assert count(StripeEvent) == 0


def test_signed_body_that_is_not_json_is_400(client, offline_processor):
    body, headers = signed("this is not json", WEBHOOK_SECRET)
    resp = client.post(url(offline_processor), data=body, headers=headers)
    assert resp.status_code == 400 and "JSON" in resp.json["error"]
    assert count(StripeEvent) == 0


def test_livemode_mismatch_is_stored_as_ignored(client, offline_processor):
    ev = so.event("charge.succeeded", so.charge(customer="cus_C"), livemode=True)
    body, headers = signed(ev, WEBHOOK_SECRET)
    assert client.post(url(offline_processor), data=body, headers=headers).status_code == 200
    row = db.session.scalar(select(StripeEvent))
    assert row.status == "ignored" and "livemode mismatch" in row.status_reason


def test_the_request_never_calls_stripe(client, offline_processor):
    """The offline processor's API base is a closed port: any Stripe call would fail the request."""
    ev = so.event("invoice.paid", so.invoice(customer="cus_D", subscription="sub_D"))
    body, headers = signed(ev, WEBHOOK_SECRET)
    assert client.post(url(offline_processor), data=body, headers=headers).status_code == 200


@pytest.mark.postgres
def test_concurrent_duplicate_deliveries_leave_one_row(app, offline_processor, backend):
    ev = so.event("charge.succeeded", so.charge(customer="cus_E"))
    body, headers = signed(ev, WEBHOOK_SECRET)
    codes: list[int] = []
    barrier = threading.Barrier(8)
    target = url(offline_processor)

    def deliver():
        with app.test_client() as c:
            barrier.wait()
            codes.append(c.post(target, data=body, headers=headers).status_code)

    threads = [threading.Thread(target=deliver) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert codes == [200] * 8
    db.session.rollback()  # end this thread's read snapshot (SQLite WAL) before counting
    assert count(StripeEvent) == 1
