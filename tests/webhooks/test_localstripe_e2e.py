"""End to end: localstripe itself posts signed webhooks to a running paydesk; the worker makes the records."""

from __future__ import annotations

import threading
import time
import uuid

import pytest
import requests
from conftest import WEBHOOK_SECRET, free_port
from sqlalchemy import select
from werkzeug.serving import make_server

from admin.extensions import db
from admin.models import Contribution, ContributionRecur, StripeEvent
from admin.services.settings.processors import gateway
from admin.worker.loop import run_once

pytestmark = pytest.mark.localstripe

CARD = {"number": "4242424242424242", "exp_month": 12, "exp_year": 2030, "cvc": "123"}


@pytest.fixture
def served(app):
    port = free_port()
    server = make_server("127.0.0.1", port, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{port}"
    server.shutdown()


@pytest.fixture
def webhook(localstripe, served, processor):
    hook = f"paydesk-e2e-{uuid.uuid4().hex[:8]}"
    target = f"{served}/webhooks/stripe/{processor.id}"
    requests.post(
        f"{localstripe}/_config/webhooks/{hook}", data={"url": target, "secret": WEBHOOK_SECRET}, timeout=10
    ).raise_for_status()
    yield
    # the localstripe server lives for the whole session: point this hook at a closed port again
    requests.post(
        f"{localstripe}/_config/webhooks/{hook}",
        data={"url": "http://127.0.0.1:9/", "secret": "x"},
        timeout=10,
    )


def wait_for(pred, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        db.session.rollback()
        if pred():
            return
        time.sleep(0.2)
    raise AssertionError("localstripe did not deliver the expected webhooks in time")


def delivered(*, event_type: str, object_id: str) -> bool:
    return (
        db.session.scalar(
            select(StripeEvent.id).where(StripeEvent.type == event_type, StripeEvent.object_id == object_id)
        )
        is not None
    )


def test_localstripe_webhooks_become_a_subscription_and_a_one_off_payment(app, processor, webhook):
    gw = gateway(processor)
    cus = gw.create("customers", {"email": "e2e@example.org", "name": "Eve Tooend"})
    pm = gw.create("payment_methods", {"type": "card", "card": CARD})
    gw.call("payment_methods", "attach", pm["id"], params={"customer": cus["id"]})
    gw.update("customers", cus["id"], {"invoice_settings": {"default_payment_method": pm["id"]}})
    product = gw.create("products", {"name": "Monthly gift"})
    plan = gw.create(
        "plans", {"product": product["id"], "amount": 1500, "currency": "usd", "interval": "month"}
    )
    sub = gw.create("subscriptions", {"customer": cus["id"], "items": [{"plan": plan["id"]}]})
    pi = gw.create(
        "payment_intents",
        {
            "amount": 2500,
            "currency": "usd",
            "customer": cus["id"],
            "payment_method": pm["id"],
            "confirm": True,
        },
    )
    assert (sub["status"], pi["status"]) == ("active", "succeeded")

    wait_for(
        lambda: (
            delivered(event_type="invoice.payment_succeeded", object_id=sub["latest_invoice"])
            and delivered(event_type="payment_intent.succeeded", object_id=pi["id"])
        )
    )
    run_once()

    rows = db.session.scalars(select(StripeEvent).where(StripeEvent.customer_id == cus["id"])).all()
    assert rows and all(r.status in ("success", "ignored") for r in rows), [
        (r.type, r.last_error) for r in rows
    ]
    recur = db.session.scalar(select(ContributionRecur).filter_by(subscription_id=sub["id"]))
    assert (recur.status, recur.amount, recur.interval) == ("In Progress", 1500, "month")
    assert recur.contact.email == "e2e@example.org"
    monthly = db.session.scalar(select(Contribution).filter_by(invoice_id=sub["latest_invoice"]))
    assert (monthly.status, monthly.amount, monthly.trxn_id, monthly.recur_id) == (
        "Completed",
        1500,
        sub["latest_invoice"],
        recur.id,
    )
    assert len(monthly.payments) == 1 and monthly.payments[0].trxn_id.startswith("ch_")
    one_off = db.session.scalar(select(Contribution).filter_by(payment_intent_id=pi["id"]))
    charge_id = pi["latest_charge"]["id"] if isinstance(pi["latest_charge"], dict) else pi["latest_charge"]
    assert (one_off.status, one_off.amount, one_off.trxn_id, one_off.recur_id) == (
        "Completed",
        2500,
        charge_id,
        None,
    )
    assert one_off.contact_id == monthly.contact_id
    # paydesk wrote its contact metadata back onto the Stripe customer
    assert gw.retrieve("customers", cus["id"])["metadata"]["contact_id"] == str(one_off.contact_id)
