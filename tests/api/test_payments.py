"""Charge, capture and refund through /api/v1 against a real localstripe: the same services as the staff pages,
scopes, the client's Idempotency-Key (and the Stripe key made from it), a refund above what is left refused
before Stripe is asked, and the later webhook adding nothing."""

from __future__ import annotations

import pytest
import responses
import stripe_objects as so
from conftest import WEBHOOK_SECRET
from payments_support import CARD_3DS, CARD_DECLINED, customer_of, paid_one_off, saved_customer
from sqlalchemy import func, select

from admin.extensions import db
from admin.models import ApiIdempotencyKey, AuditLog, Contact, Contribution, Payment, StripeEvent
from admin.services.settings.processors import gateway
from admin.stripe_gateway import Gateway
from admin.worker.loop import run_once
from tests.api.conftest import bearer

pytestmark = pytest.mark.localstripe

OPERATIONS = [
    ("/api/v1/charges", {"contact_id": 1, "amount": 100}),
    ("/api/v1/captures", {"id": "pi_notthere"}),
    ("/api/v1/refunds", {"payment_id": 1}),
]


def count(model, *where) -> int:
    db.session.rollback()
    return db.session.scalar(select(func.count()).select_from(model).where(*where)) or 0


def webhook(client, processor, type_: str, obj: dict) -> None:
    """Stripe's webhook for ``obj``, posted and processed as in production (the handler re-reads Stripe)."""
    body, headers = so.signed(so.event(type_, obj), WEBHOOK_SECRET)
    assert client.post(f"/webhooks/stripe/{processor.id}", data=body, headers=headers).status_code == 200
    run_once()
    db.session.rollback()
    row = db.session.scalar(
        select(StripeEvent).where(StripeEvent.type == type_).order_by(StripeEvent.id.desc())
    )
    assert row.status in ("success", "ignored"), row.last_error


def forget_answers() -> None:
    """As if the requests had died before their answers were kept."""
    db.session.rollback()
    db.session.query(ApiIdempotencyKey).delete()
    db.session.commit()


@pytest.fixture
def stripe_keys(monkeypatch) -> list[tuple[str, str, str | None]]:
    """(resource, method, idempotency key) of every write the gateway sends."""
    sent: list[tuple[str, str, str | None]] = []
    real = Gateway.call

    def spy(self, resource, method, *args, params=None, idempotency_key=None):
        if method not in ("retrieve", "list"):
            sent.append((resource, method, idempotency_key))
        return real(self, resource, method, *args, params=params, idempotency_key=idempotency_key)

    monkeypatch.setattr(Gateway, "call", spy)
    return sent


@pytest.mark.parametrize(("path", "body"), OPERATIONS)
def test_no_token_401_read_token_403(client, make_token, path, body):
    assert client.post(path, json=body).status_code == 401
    resp = client.post(path, json=body, headers=bearer(make_token("read")))
    assert resp.status_code == 403 and resp.json["error"]["code"] == "forbidden"


@pytest.mark.postgres
def test_charge_a_saved_customer_and_the_webhook_adds_nothing(client, make_token, processor):
    contact = saved_customer(processor)
    headers = bearer(make_token("write", name="crm"))
    resp = client.post(
        "/api/v1/charges",
        json={"contact_id": contact.id, "amount": 2500, "currency": "usd", "description": "Spring appeal"},
        headers=headers,
    )
    assert resp.status_code == 201, resp.json
    body = resp.json
    assert body["status"] == "succeeded" and body["payment_intent_id"].startswith("pi_")
    assert body["charge_id"].startswith("ch_") and body["payment"]["charge_id"] == body["charge_id"]
    assert body["contribution"]["status"] == "Completed" and body["contribution"]["amount"] == 2500
    assert body["contribution"]["contact_id"] == contact.id and body["contribution"]["currency"] == "usd"
    assert (
        body["payment"]["amount"] == 2500 and body["payment"]["contribution_id"] == body["contribution"]["id"]
    )
    entry = db.session.scalars(select(AuditLog).where(AuditLog.action == "payment.charge")).one()
    assert entry.actor == "api:crm" and entry.result == "ok" and entry.stripe_request_id

    charge = gateway(processor).retrieve("charges", body["charge_id"])
    webhook(client, processor, "charge.succeeded", dict(charge))
    assert count(Contribution, Contribution.contact_id == contact.id) == 1
    assert count(Payment, Payment.contribution_id == body["contribution"]["id"]) == 1


def test_charge_by_customer_id_alone(client, writer, processor):
    contact = saved_customer(processor)
    resp = client.post(
        "/api/v1/charges", json={"customer_id": customer_of(contact), "amount": 1000}, headers=writer
    )
    assert resp.status_code == 201, resp.json
    assert resp.json["contribution"]["contact_id"] == contact.id
    unknown = client.post(
        "/api/v1/charges", json={"customer_id": "cus_nobody", "amount": 1000}, headers=writer
    )
    assert unknown.status_code == 400 and unknown.json["error"]["field"] == "customer_id"
    neither = client.post("/api/v1/charges", json={"amount": 1000}, headers=writer)
    assert neither.status_code == 400 and neither.json["error"]["field"] == "contact_id"


@pytest.mark.parametrize("card", [CARD_DECLINED, CARD_3DS])
def test_a_declined_card_is_402_and_the_contribution_failed(client, writer, processor, card):
    contact = saved_customer(processor, card)
    headers = {**writer, "Idempotency-Key": "declined-1"}
    resp = client.post("/api/v1/charges", json={"contact_id": contact.id, "amount": 1500}, headers=headers)
    assert resp.status_code == 402 and resp.json["error"]["code"] == "card_error", resp.json
    assert "is Failed" in resp.json["error"]["message"]
    assert count(Contribution, Contribution.status == "Failed") == 1
    again = client.post("/api/v1/charges", json={"contact_id": contact.id, "amount": 1500}, headers=headers)
    assert again.status_code == 402 and again.headers["Idempotent-Replayed"] == "true"
    assert count(Contribution) == 1


def test_authorise_then_capture_in_part_by_charge_id(client, writer, processor):
    contact = saved_customer(processor)
    made = client.post(
        "/api/v1/charges",
        json={"contact_id": contact.id, "amount": 3000, "capture": False, "expires_after": 24},
        headers=writer,
    ).json
    assert made["status"] == "requires_capture" and made["payment"] is None and made["charge_id"] is None
    assert made["contribution"]["status"] == "Pending"
    pi = made["payment_intent_id"]
    charge_id = gateway(processor).retrieve("payment_intents", pi)["latest_charge"]
    charge_id = charge_id["id"] if isinstance(charge_id, dict) else charge_id

    too_much = client.post("/api/v1/captures", json={"id": charge_id, "amount": 3001}, headers=writer)
    assert too_much.status_code == 400 and too_much.json["error"]["field"] == "amount"
    resp = client.post("/api/v1/captures", json={"id": charge_id, "amount": 2000}, headers=writer)
    assert resp.status_code == 200, resp.json
    body = resp.json
    assert (body["id"], body["outcome"], body["amount"], body["currency"]) == (pi, "captured", 2000, "usd")
    assert body["contribution"]["id"] == made["contribution"]["id"]
    assert gateway(processor).retrieve("payment_intents", pi)["status"] == "succeeded"
    entry = db.session.scalars(select(AuditLog).where(AuditLog.action == "intent.capture")).one()
    assert entry.actor.startswith("api:") and entry.parameters["amount"] == 2000

    # the payment is written by Stripe's webhook, on the same contribution
    webhook(
        client,
        processor,
        "payment_intent.succeeded",
        dict(gateway(processor).retrieve("payment_intents", pi)),
    )
    assert count(Contribution) == 1
    c = db.session.get(Contribution, made["contribution"]["id"])
    (charged,) = [p for p in c.payments if not p.refund_id]
    # localstripe releases the rest as a refund of the difference (Stripe: amount_captured); 20.00 counts
    assert c.amount - (c.refunded_amount or 0) == 2000 or charged.amount == 2000

    again = client.post("/api/v1/captures", json={"id": pi}, headers=writer)  # by pi_, nothing left
    assert again.status_code == 200 and again.json["outcome"] == "already_succeeded"
    gone = client.post("/api/v1/captures", json={"id": "pi_notthere"}, headers=writer)
    assert gone.status_code == 404 and gone.json["error"]["field"] == "id"


def test_capture_a_charge_made_without_an_intent_is_recorded_at_once(client, writer, processor):
    contact = saved_customer(processor)
    ch = gateway(processor).create(
        "charges", {"amount": 4000, "currency": "usd", "customer": customer_of(contact), "capture": False}
    )
    resp = client.post("/api/v1/captures", json={"id": ch["id"]}, headers=writer)
    assert resp.status_code == 200, resp.json
    body = resp.json
    assert (body["id"], body["charge_id"], body["amount"]) == (ch["id"], ch["id"], 4000)
    assert body["payment"]["amount"] == 4000 and body["contribution"]["status"] == "Completed"


@pytest.mark.postgres
def test_refund_in_part_then_the_rest_and_the_webhook_adds_nothing(client, writer, processor):
    c, charge = paid_one_off(processor, 5000)
    pay = next(p for p in c.payments if not p.refund_id)
    resp = client.post(
        "/api/v1/refunds",
        json={
            "payment_id": pay.id,
            "amount": 2000,
            "reason": "requested_by_customer",
            "metadata": {"ticket": "T-1"},
        },
        headers=writer,
    )
    assert resp.status_code == 201, resp.json
    body = resp.json
    assert body["refund_id"].startswith("re_") and body["charge_id"] == charge["id"]
    assert (body["amount"], body["currency"], body["recorded_now"]) == (2000, "usd", True)
    assert body["payment"]["amount"] == -2000 and body["payment"]["refund_id"] == body["refund_id"]
    assert body["contribution"]["status"] == "Partially refunded"
    refund = gateway(processor).retrieve("refunds", body["refund_id"])
    assert (refund["amount"], refund["reason"], refund["metadata"]) == (
        2000,
        "requested_by_customer",
        {"ticket": "T-1"},
    )

    webhook(client, processor, "charge.refunded", dict(gateway(processor).retrieve("charges", charge["id"])))
    assert count(Payment, Payment.refund_id == body["refund_id"]) == 1

    rest = client.post("/api/v1/refunds", json={"payment_id": pay.id}, headers=writer)
    assert rest.status_code == 201 and rest.json["amount"] == 3000
    assert rest.json["contribution"]["status"] == "Refunded"
    entry = db.session.scalars(
        select(AuditLog).where(AuditLog.action == "payment.refund").order_by(AuditLog.id.desc())
    ).first()
    assert entry.actor.startswith("api:") and entry.parameters["refund"] == rest.json["refund_id"]


def test_a_refund_above_what_is_left_is_refused_before_stripe(client, writer, processor):
    c, _ = paid_one_off(processor, 3000)
    pay = next(p for p in c.payments if not p.refund_id)
    assert (
        client.post(
            "/api/v1/refunds", json={"payment_id": pay.id, "amount": 2500}, headers=writer
        ).status_code
        == 201
    )
    with responses.RequestsMock() as rsps:  # any request to Stripe would fail this test
        resp = client.post("/api/v1/refunds", json={"payment_id": pay.id, "amount": 501}, headers=writer)
        assert len(rsps.calls) == 0
    assert resp.status_code == 400
    assert (
        resp.json["error"]["field"] == "amount" and "5.00 USD left to refund" in resp.json["error"]["message"]
    )
    assert count(Payment, Payment.refund_id.is_not(None)) == 1


@pytest.mark.parametrize(
    ("path", "body", "field"),
    [
        ("/api/v1/charges", {"contact_id": 1, "amount": 0}, "amount"),
        ("/api/v1/charges", {"contact_id": 1, "amount": 100, "currency": "USD"}, "currency"),
        ("/api/v1/charges", {"contact_id": 1, "amount": 100, "currency": "xyz"}, "currency"),
        ("/api/v1/charges", {"contact_id": 1, "amount": 1005, "currency": "kwd"}, "amount"),
        ("/api/v1/charges", {"contact_id": 1, "amount": 100_000_000, "currency": "usd"}, "amount"),
        ("/api/v1/charges", {"contact_id": 1, "amount": 100, "capture": "later"}, "capture"),
        ("/api/v1/charges", {"contact_id": 1, "amount": 100, "metadata": {"contact_id": "7"}}, "metadata"),
        ("/api/v1/charges", {"contact_id": 1, "amount": 100, "tip": 5}, "tip"),
        ("/api/v1/charges", {"contact_id": 999999, "amount": 100}, "contact_id"),
        ("/api/v1/captures", {"id": "cus_123"}, "id"),
        ("/api/v1/captures", {"id": "pi_123", "amount": -1}, "amount"),
        ("/api/v1/refunds", {"payment_id": 1, "reason": "changed_mind"}, "reason"),
        ("/api/v1/refunds", {"payment_id": 1, "metadata": {"k" * 41: "v"}}, "metadata"),
        ("/api/v1/refunds", {"payment_id": 999999}, "payment_id"),
        ("/api/v1/refunds", {}, "payment_id"),
    ],
)
def test_bad_input_is_400_naming_the_field_before_any_work(client, writer, processor, path, body, field):
    if body.get("contact_id") == 1:  # a contact that is there, without a Stripe customer
        contact = Contact(display_name="Grace", email="grace@example.org")
        db.session.add(contact)
        db.session.commit()
        body = {**body, "contact_id": contact.id}
    with responses.RequestsMock() as rsps:
        resp = client.post(path, json=body, headers={**writer, "Idempotency-Key": "bad-input"})
        assert len(rsps.calls) == 0
    assert resp.status_code == 400, resp.json
    assert resp.json["error"]["field"] == field and resp.json["error"]["code"] == "invalid_request"
    assert count(Contribution) == 0


def test_refund_reasons_are_the_services(app):
    import typing

    from admin.api.schemas import RefundReason
    from admin.services.payments.refunds import REASONS

    assert set(typing.get_args(RefundReason)) == set(REASONS)


def test_idempotency_key_same_body_replays_other_body_409(client, writer, processor):
    contact = saved_customer(processor)
    headers = {**writer, "Idempotency-Key": "charge-42"}
    first = client.post("/api/v1/charges", json={"contact_id": contact.id, "amount": 1200}, headers=headers)
    again = client.post("/api/v1/charges", json={"contact_id": contact.id, "amount": 1200}, headers=headers)
    assert first.status_code == again.status_code == 201
    assert again.json == first.json and again.headers["Idempotent-Replayed"] == "true"
    other = client.post("/api/v1/charges", json={"contact_id": contact.id, "amount": 1300}, headers=headers)
    assert other.status_code == 409 and other.json["error"]["field"] == "Idempotency-Key"
    assert len(gateway(processor).list("payment_intents", customer=customer_of(contact))["data"]) == 1
    assert count(Contribution) == 1


@pytest.mark.postgres
def test_a_retry_after_a_lost_answer_reaches_stripe_with_the_same_key(client, writer, processor, stripe_keys):
    """The first request's answer never came back (its stored answer is gone, as after a crash): the client's
    retry with the same Idempotency-Key sends Stripe the same keys, so Stripe charges and refunds once."""
    contact = saved_customer(processor)
    headers = {**writer, "Idempotency-Key": "retry-7"}
    first = client.post(
        "/api/v1/charges", json={"contact_id": contact.id, "amount": 2200}, headers=headers
    ).json
    forget_answers()
    second = client.post("/api/v1/charges", json={"contact_id": contact.id, "amount": 2200}, headers=headers)
    assert second.status_code == 201 and "Idempotent-Replayed" not in second.headers
    assert second.json["payment_intent_id"] == first["payment_intent_id"]
    assert second.json["contribution"]["id"] == first["contribution"]["id"]
    assert len(gateway(processor).list("payment_intents", customer=customer_of(contact))["data"]) == 1
    intent_keys = [k for r, m, k in stripe_keys if r == "payment_intents" and m == "create"]
    assert intent_keys and all(k == intent_keys[0] and "paydesk-api-charge" in k for k in intent_keys)

    refund_headers = {**writer, "Idempotency-Key": "refund-7"}
    pay_id = first["payment"]["id"]
    one = client.post("/api/v1/refunds", json={"payment_id": pay_id, "amount": 700}, headers=refund_headers)
    forget_answers()
    db.session.query(Payment).filter(Payment.refund_id.is_not(None)).delete()  # as if never recorded
    db.session.commit()
    two = client.post("/api/v1/refunds", json={"payment_id": pay_id, "amount": 700}, headers=refund_headers)
    assert two.status_code == 201 and two.json["refund_id"] == one.json["refund_id"]
    refund_keys = [k for r, m, k in stripe_keys if r == "refunds"]
    assert len(refund_keys) == 2 and refund_keys[0] == refund_keys[1]
    assert len(gateway(processor).list("refunds", charge=first["charge_id"])["data"]) == 1


def test_amounts_are_bounded_per_currency_not_by_the_usd_maximum(client, writer, processor):
    """Stripe takes up to twelve digits of IDR: 1,500,000.00 IDR (about 90 USD) is no amount to refuse."""
    contact = saved_customer(processor)
    resp = client.post(
        "/api/v1/charges",
        json={"contact_id": contact.id, "amount": 150_000_000, "currency": "idr"},
        headers=writer,
    )
    assert resp.status_code == 201, resp.json
    assert resp.json["contribution"]["amount"] == 150_000_000


def test_a_capture_on_another_processor_leaves_the_intents_record_alone(
    client, writer, processor, offline_processor
):
    """``?ppid=`` naming another Stripe account: Stripe there has no such intent (404), which says nothing
    about the intent paydesk tracks on its own processor: that record is not marked gone."""
    from admin.services.intents.queries import GONE, by_intent_id

    contact = saved_customer(processor)
    made = client.post(
        "/api/v1/charges?ppid=" + str(processor.id),
        json={"contact_id": contact.id, "amount": 3000, "capture": False},
        headers=writer,
    ).json
    pi = made["payment_intent_id"]
    with responses.RequestsMock() as rsps:
        rsps.get(
            f"http://127.0.0.1:9/v1/payment_intents/{pi}",
            status=404,
            json={
                "error": {
                    "type": "invalid_request_error",
                    "code": "resource_missing",
                    "message": f"No such payment_intent: '{pi}'",
                }
            },
        )
        resp = client.post(f"/api/v1/captures?ppid={offline_processor.id}", json={"id": pi}, headers=writer)
    assert resp.status_code == 404, resp.json
    db.session.rollback()
    row = by_intent_id(pi)
    assert row.processor_id == processor.id and row.flags != GONE


def test_a_key_used_again_after_its_answer_expired_with_another_amount_is_a_new_charge(
    client, writer, processor
):
    """Once the stored answer is gone (retention keeps them 24 hours, as Stripe keeps its keys), the same
    Idempotency-Key with another amount is another request: it is charged as asked, never answered with the
    first charge's contribution as if it were this one."""
    contact = saved_customer(processor)
    headers = {**writer, "Idempotency-Key": "monthly-order"}
    first = client.post("/api/v1/charges", json={"contact_id": contact.id, "amount": 1200}, headers=headers)
    assert first.status_code == 201
    forget_answers()
    second = client.post("/api/v1/charges", json={"contact_id": contact.id, "amount": 1300}, headers=headers)
    assert second.status_code == 201, second.json
    assert second.json["contribution"]["amount"] == 1300
    assert second.json["contribution"]["id"] != first.json["contribution"]["id"]
    assert len(gateway(processor).list("payment_intents", customer=customer_of(contact))["data"]) == 2
