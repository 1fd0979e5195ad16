"""POST /webhooks/stripe/<ppid>: verify, store once, answer; refuse anything unverified without a trace."""

from __future__ import annotations

import hashlib
import hmac
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
from admin.services.settings.processors import update_processor

from .conftest import count


def url(processor) -> str:
    return f"/webhooks/stripe/{processor.id}"


def no_business_rows() -> bool:
    return (
        count(StripeEvent) == 0 and count(Contribution) == 0 and count(Payment) == 0 and count(Contact) == 0
    )


def test_valid_event_is_stored_queued_with_the_ids_it_touches(client, offline_processor):
    ch = so.charge(customer="cus_A", payment_intent="pi_A")
    ev = so.event("charge.succeeded", ch)
    body, headers = signed(ev, WEBHOOK_SECRET)
    resp = client.post(url(offline_processor), data=body, headers=headers)
    assert resp.status_code == 200 and resp.json == {"received": True, "duplicate": False}
    row = db.session.scalar(select(StripeEvent))
    assert (row.event_id, row.type, row.status, row.source) == (
        ev["id"],
        "charge.succeeded",
        "queued",
        "webhook",
    )
    assert (row.charge_id, row.payment_intent_id, row.customer_id) == (ch["id"], "pi_A", "cus_A")
    assert json.loads(row.raw) == ev


@pytest.mark.parametrize(
    "case, reason",
    [
        ("wrong secret", "signature mismatch"),
        ("stale", "timestamp outside tolerance"),
        ("missing", "missing Stripe-Signature header"),
        ("malformed", "malformed Stripe-Signature header"),
        ("tampered", "signature mismatch"),
    ],
)
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


def test_a_flood_of_bad_signatures_is_counted_in_two_writes_and_two_log_lines(
    app, client, offline_processor, caplog
):
    """Forged deliveries do not each take the database's write lock or a log line: the first is written and
    logged at once (the dashboard shows it), the rest together after the interval."""
    from sqlalchemy import event

    app.config["WEBHOOK_REJECTION_FLUSH_SECONDS"] = 0.5
    writes = []

    def listener(conn, cursor, statement, *a):
        if "webhook_rejection" in statement:
            writes.append(statement)

    event.listen(db.engine, "before_cursor_execute", listener)
    try:
        body, headers = signed(so.event("charge.succeeded", so.charge(customer="cus_B")), "whsec_not_ours")
        for _ in range(30):
            assert client.post(url(offline_processor), data=body, headers=headers).status_code == 400
        counter = db.session.scalar(select(WebhookRejection).filter_by(processor_id=offline_processor.id))
        assert counter.count == 1
        time.sleep(1.0)
        db.session.rollback()  # end the read, so the timer's write is seen
        counter = db.session.scalar(select(WebhookRejection).filter_by(processor_id=offline_processor.id))
        assert counter.count == 30
    finally:
        event.remove(db.engine, "before_cursor_execute", listener)
    assert len([w for w in writes if w.lstrip().upper().startswith(("UPDATE", "INSERT"))]) <= 4
    lines = [
        r.getMessage() for r in caplog.records if "webhook" in r.getMessage() and "rejected" in r.getMessage()
    ]
    assert len(lines) == 2 and "29 x signature mismatch" in lines[1]


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


# -- never a 500: whatever arrives is 404, 400 with a short reason, or stored ------------------------


@pytest.mark.postgres
@pytest.mark.parametrize("ppid", ["9223372036854775808", "2147483648", "99999999999999999999999", "0"])
def test_processor_id_out_of_range_is_404_before_any_lookup(client, offline_processor, backend, ppid, caplog):
    body, headers = signed(so.event("customer.updated", so.customer()), WEBHOOK_SECRET)
    resp = client.post(f"/webhooks/stripe/{ppid}", data=body, headers=headers)
    assert resp.status_code == 404
    assert "Traceback" not in caplog.text and "OverflowError" not in caplog.text


def _event_with(**changes) -> dict:
    ev = so.event("charge.succeeded", so.charge(customer="cus_env"))
    for path, value in changes.items():
        target = ev
        keys = path.split("__")
        for k in keys[:-1]:
            target = target[k]
        if value is _DROP:
            target.pop(keys[-1])
        else:
            target[keys[-1]] = value
    return ev


_DROP = object()


@pytest.mark.postgres
@pytest.mark.parametrize(
    "changes, reason",
    [
        ({"created": "1700000000"}, "created must be a Unix time"),
        ({"created": 10**30}, "created must be a Unix time"),
        ({"created": -5}, "created must be a Unix time"),
        ({"created": 1.5}, "created must be a Unix time"),
        ({"created": True}, "created must be a Unix time"),
        ({"data": "a string"}, "data must be an object"),
        ({"data": [1, 2]}, "data must be an object"),
        ({"data": _DROP}, "data must be an object"),
        ({"data__object": "ch_1"}, "data.object must be an object"),
        ({"data__object": [{"id": "ch_1"}]}, "data.object must be an object"),
        ({"id": {"nested": "evt_1"}}, "id must be a string"),
        ({"id": 12345}, "id must be a string"),
        ({"id": ""}, "id is empty"),
        ({"id": _DROP}, "id is required"),
        ({"type": ["charge.succeeded"]}, "type must be a string"),
        ({"api_version": {"v": 1}}, "api_version must be a string"),
        ({"livemode": "false"}, "livemode must be true or false"),
        ({"id": "evt_" + "x" * 300}, "id is longer than 255 characters"),
        ({"type": "t" * 101}, "type is longer than 100 characters"),
        ({"api_version": "v" * 65}, "api_version is longer than 64 characters"),
        ({"id": "evt_nul\u0000"}, "id contains control characters"),
        ({"id": "evt_\ud800"}, "id is not valid Unicode text"),
        ({"data__object__id": {"id": "ch_1"}}, "data.object.id must be a string"),
        ({"data__object__customer": "cus_" + "c" * 300}, "customer id in data.object is longer than 255"),
        (
            {"data__object__payment_intent": {"id": "pi_" + "p" * 300}},
            "payment intent id in data.object is longer",
        ),
    ],
)
def test_signed_event_of_the_wrong_shape_is_400_with_a_reason(
    client, offline_processor, backend, changes, reason, caplog
):
    ev = _event_with(**changes)
    body, headers = signed(json.dumps(ev), WEBHOOK_SECRET)
    resp = client.post(url(offline_processor), data=body.encode("utf-8", "surrogatepass"), headers=headers)
    assert resp.status_code == 400, resp.get_data(as_text=True)
    assert reason in resp.json["error"]
    assert count(StripeEvent) == 0
    assert "Traceback" not in caplog.text


def test_a_body_nested_ten_thousand_levels_deep_is_400(client, offline_processor):
    deep = (
        '{"id": "evt_deep", "type": "charge.succeeded", "data": {"object": '
        + "[" * 10_000
        + "]" * 10_000
        + "}}"
    )
    body, headers = signed(deep, WEBHOOK_SECRET)
    resp = client.post(url(offline_processor), data=body, headers=headers)
    assert resp.status_code == 400 and "nested" in resp.json["error"]
    shallow_but_too_deep = so.event("charge.succeeded", so.charge(customer="cus_d"))
    inner = shallow_but_too_deep["data"]["object"]
    for _ in range(100):
        inner["metadata"] = {"n": {}}
        inner = inner["metadata"]["n"]
    body, headers = signed(shallow_but_too_deep, WEBHOOK_SECRET)
    resp = client.post(url(offline_processor), data=body, headers=headers)
    assert resp.status_code == 400 and "nested more than" in resp.json["error"]
    assert count(StripeEvent) == 0


@pytest.mark.postgres
@pytest.mark.parametrize(
    "encoding, reason",
    [
        ("latin-1", "body is not UTF-8"),
        ("utf-16", "body is not UTF-8"),  # with a byte order mark
        ("utf-16-le", "body is not JSON"),  # no BOM: NUL bytes between the characters are valid UTF-8
        ("utf-8-sig", "body is not JSON"),
    ],
)
def test_a_body_that_is_not_utf8_json_is_400(client, offline_processor, backend, encoding, reason):
    ev = so.event("customer.updated", so.customer(name="Zoë Ünicode"))
    # ASCII JSON in UTF-16 without a BOM is the nasty case: every byte of it is valid UTF-8 too
    raw = json.dumps(ev, ensure_ascii=encoding == "utf-16-le").encode(encoding)
    ts = int(time.time())
    sig = hmac.new(WEBHOOK_SECRET.encode(), f"{ts}.".encode() + raw, hashlib.sha256).hexdigest()
    resp = client.post(
        url(offline_processor),
        data=raw,
        headers={"Stripe-Signature": f"t={ts},v1={sig}", "Content-Type": "application/json"},
    )
    assert resp.status_code == 400 and resp.json["error"] == reason
    assert count(StripeEvent) == 0


def test_signature_dated_in_the_future_is_refused_like_a_stale_one(app, client, offline_processor):
    tolerance = app.config["WEBHOOK_TOLERANCE"]
    for offset, status in ((tolerance + 60, 400), (10**9, 400), (tolerance - 60, 200)):
        body, headers = signed(
            so.event("customer.updated", so.customer()), WEBHOOK_SECRET, int(time.time()) + offset
        )
        resp = client.post(url(offline_processor), data=body, headers=headers)
        assert resp.status_code == status, (offset, resp.get_data(as_text=True))
        if status == 400:
            assert resp.json["error"] == "timestamp outside tolerance"
    assert count(StripeEvent) == 1


def test_no_body_or_secret_in_any_log_line(app, client, offline_processor, caplog):
    """Accepted, duplicate, refused and malformed deliveries, then the worker failing on one: the log never
    carries the body (a marker inside it) or the signing secret."""
    import logging

    from admin.worker.loop import run_once

    caplog.set_level(logging.DEBUG)
    marker = "MARKER-donor-secret-address"
    good = so.event(
        "payment_intent.created",
        so.payment_intent(status="requires_payment_method", amount="2500", description=marker),
    )
    bad_shape = _event_with(created="soon")
    bad_shape["data"]["object"]["description"] = marker
    for ev, secret in (
        (good, WEBHOOK_SECRET),
        (good, WEBHOOK_SECRET),
        (good, "whsec_wrong"),
        (bad_shape, WEBHOOK_SECRET),
    ):
        body, headers = signed(ev, secret)
        client.post(url(offline_processor), data=body, headers=headers)
    client.post(
        url(offline_processor),
        data=f"not json {marker}",
        headers={"Stripe-Signature": signed(f"not json {marker}", WEBHOOK_SECRET)[1]["Stripe-Signature"]},
    )
    run_once()  # the stored event fails in the worker: its amount is not an integer
    row = db.session.scalar(select(StripeEvent))
    assert row.status == "error" and "amount is not an integer" in row.last_error
    assert marker not in caplog.text and WEBHOOK_SECRET not in caplog.text
    assert "2500" not in row.last_error  # the value itself is not repeated either


def test_a_chunked_body_over_a_mib_is_refused_before_it_is_read(client, offline_processor):
    from donate_support import Endless, post_chunked

    body = Endless()
    resp = post_chunked(client, url(offline_processor), body)
    assert resp.status_code == 413 and resp.json["error"] == "payload too large"
    assert body.read_bytes <= 1024 * 1024 + 1
    counter = db.session.scalar(select(WebhookRejection).filter_by(processor_id=offline_processor.id))
    assert (counter.reason, counter.count) == ("payload too large", 1)
