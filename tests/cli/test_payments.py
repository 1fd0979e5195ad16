"""``payments charge|capture|refund`` against localstripe: options from the pages' parameter classes, the
same refusals before Stripe is asked, --format json, no tracebacks."""

from __future__ import annotations

import json

import pytest
from payments_support import paid_one_off, saved_customer

from admin.extensions import db
from admin.models import Contribution

pytestmark = pytest.mark.localstripe


def invoke(runner, *args):
    return runner.invoke(args=list(args))


def test_charge_authorise_then_capture_then_refund(runner, processor):
    contact = saved_customer(processor)
    res = invoke(
        runner,
        "payments",
        "charge",
        "--contact-id",
        str(contact.id),
        "--amount",
        "40",
        "--currency",
        "usd",
        "--description",
        "Phone gift",
        "--capture",
        "authorise",
        "--metadata",
        "campaign=phone",
        "--format",
        "json",
    )
    assert res.exit_code == 0, res.output
    row = json.loads(res.output)[0]
    assert row["status"] == "requires_capture" and row["stripe_request_id"].startswith("req_")
    cap = invoke(runner, "payments", "capture", "--id", row["payment_intent_id"], "--amount", "30")
    assert cap.exit_code == 0 and "Captured 30.00 USD of 40.00 USD" in cap.output, cap.output

    c, _ = paid_one_off(processor, 2500, contact=contact)
    pay = c.payments[0]
    ref = invoke(
        runner,
        "payments",
        "refund",
        "--payment-id",
        str(pay.id),
        "--amount",
        "5",
        "--reason",
        "requested_by_customer",
        "--format",
        "json",
    )
    assert ref.exit_code == 0, ref.output
    out = json.loads(ref.output)[0]
    assert out["amount"] == -500 and out["refund_id"].startswith("re_")
    assert db.session.get(Contribution, c.id).refunded_amount == 500


def test_refusals_name_the_field_without_a_traceback(runner, processor):
    contact = saved_customer(processor)
    c, _ = paid_one_off(processor, 1000, contact=contact)
    over = invoke(runner, "payments", "refund", "--payment-id", str(c.payments[0].id), "--amount", "10.01")
    assert over.exit_code == 1 and "Amount: 10.01 USD is more than the 10.00 USD left" in over.output
    bad = invoke(
        runner,
        "payments",
        "charge",
        "--contact-id",
        str(contact.id),
        "--amount",
        "5",
        "--statement-descriptor-suffix",
        "TOO*MUCH",
    )
    assert bad.exit_code == 1 and "Statement descriptor suffix" in bad.output
    meta = invoke(
        runner, "payments", "charge", "--contact-id", str(contact.id), "--amount", "5", "--metadata", "x"
    )
    assert meta.exit_code == 1 and "KEY=VALUE" in meta.output
    wrong = invoke(runner, "payments", "capture", "--id", "in_123")
    assert wrong.exit_code == 1 and "is not a payment intent id" in wrong.output
    for res in (over, bad, meta, wrong):
        assert "Traceback" not in res.output


def test_help_lists_the_pages_fields(runner, app):
    res = invoke(runner, "payments", "charge", "--help")
    for opt in (
        "--statement-descriptor-suffix",
        "--application-fee",
        "--destination",
        "--transfer-group",
        "--expires-after",
        "--metadata",
        "--capture",
    ):
        assert opt in res.output
    assert "list" in invoke(runner, "payments", "--help").output  # one group with payments list


def test_cards_list_add_default_remove(runner, processor):
    from payments_support import card, customer_of

    contact = saved_customer(processor)
    cid = str(contact.id)
    listed = json.loads(invoke(runner, "cards", "list", "--contact-id", cid, "--format", "json").output)
    assert [(c["last4"], c["default"], c["customer"]) for c in listed] == [
        ("4242", True, customer_of(contact))
    ]
    new = card(processor, "5555555555554444")
    res = invoke(runner, "cards", "add", "--contact-id", cid, "--card", new)
    assert res.exit_code == 0 and "ending 4444" in res.output, res.output
    assert invoke(runner, "cards", "default", "--contact-id", cid, "--card", new).exit_code == 0
    table = invoke(runner, "cards", "list", "--contact-id", cid).output
    assert table.splitlines()[1].startswith(new) and "True" in table.splitlines()[1]
    res = invoke(runner, "cards", "remove", "--contact-id", cid, "--card", listed[0]["id"])
    assert res.exit_code == 0 and "Removed" in res.output
    bad = invoke(runner, "cards", "add", "--contact-id", cid, "--card", "tok_visa")
    assert bad.exit_code == 1 and "Card: a saved card's id" in bad.output and "Traceback" not in bad.output
    nobody = invoke(runner, "cards", "list", "--contact-id", "999999")
    assert nobody.exit_code == 1 and "no contact" in nobody.output
