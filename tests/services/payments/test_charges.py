"""Charging a saved customer against localstripe: captured at once or authorised only, recorded as the
webhook would record it (and the later webhook adds nothing), input refused before Stripe is asked, declines
recorded as a failed contribution with Stripe's message and request id."""

from __future__ import annotations

import json

import pytest
import responses
from payments_support import CARD_DECLINED, customer_of, saved_customer
from sqlalchemy import func, select

from admin.errors import ServiceError
from admin.extensions import db
from admin.models import AuditLog, Contribution, Payment
from admin.services.core.stripe_reader import StripeReader, write_after_reading
from admin.services.intents.queries import by_intent_id
from admin.services.payments import charges
from admin.services.records.charges import record_charge
from admin.services.settings.processors import gateway
from admin.stripe_shapes import sid


def ask(contact, **form) -> charges.ChargeRequest:
    return charges.ChargeRequest.from_form(
        {"amount": "25.00", "currency": "usd", **form}, contact_id=contact.id
    )


@pytest.mark.postgres
def test_charge_now_records_contribution_and_payment_once(processor):
    contact = saved_customer(processor)
    out = charges.charge(
        processor,
        ask(contact, description="Spring appeal", statement_descriptor_suffix="SPRING", metadata_key=None),
    )
    assert out.ok and out.status == "succeeded"
    c = db.session.get(Contribution, out.contribution.id)
    assert (c.status, c.amount, c.contact_id, c.source, c.payment_intent_id) == (
        "Completed",
        2500,
        contact.id,
        "staff",
        out.intent_id,
    )
    pay = c.payments[0]
    assert pay.trxn_id.startswith("ch_") and c.trxn_id == pay.trxn_id and pay.amount == 2500
    pi = gateway(processor).retrieve("payment_intents", out.intent_id)
    invoice_id = pi["metadata"]["invoice_id"]
    # the FAQ's description: the description, contactID-contributionID and paydesk's unique invoice id
    assert pi["description"] == f"Spring appeal {contact.id}-{c.id} {invoice_id}" == c.description
    assert pi["metadata"]["contribution_id"] == str(c.id) and pi["statement_descriptor_suffix"] == "SPRING"
    assert by_intent_id(out.intent_id).identifier == invoice_id

    # the charge.succeeded webhook, later: the same contribution and payment, nothing added
    reader = StripeReader(processor)
    charge = reader.get("charges", pay.trxn_id)
    write_after_reading(reader, lambda: record_charge(reader, processor, charge))
    db.session.commit()
    assert (
        db.session.scalar(
            select(func.count()).select_from(Contribution).where(Contribution.contact_id == contact.id)
        )
        == 1
    )
    assert (
        db.session.scalar(select(func.count()).select_from(Payment).where(Payment.contribution_id == c.id))
        == 1
    )
    entry = db.session.scalars(select(AuditLog).where(AuditLog.action == "payment.charge")).one()
    assert entry.result == "ok" and entry.stripe_request_id and entry.object_id == str(c.id)


def test_authorise_only_then_capture_by_charge_id(processor):
    from admin.services.intents import ops

    contact = saved_customer(processor)
    out = charges.charge(processor, ask(contact, capture="authorise", expires_after="2"))
    assert out.status == "requires_capture"
    c = db.session.get(Contribution, out.contribution.id)
    assert c.status == "Pending" and not c.payments
    row = by_intent_id(out.intent_id)
    extra = json.loads(row.extra_data)
    assert row.capture_method == "manual" and extra["staff_authorisation"] and extra["cancel_after"]
    charge_id = sid(gateway(processor).retrieve("payment_intents", out.intent_id)["latest_charge"])
    with pytest.raises(ServiceError, match="more than the 25.00 USD authorised"):
        ops.capture(processor, charge_id, amount="30")
    done = ops.capture(
        processor, charge_id, amount="20.00", action_key="k1"
    )  # by ch_, as the seed's gateway_id
    assert done.ok and done.outcome == ops.CAPTURED and done.intent_id == out.intent_id
    assert gateway(processor).retrieve("payment_intents", out.intent_id)["status"] == "succeeded"
    entry = db.session.scalars(select(AuditLog).where(AuditLog.action == "intent.capture")).one()
    assert entry.parameters["amount"] == 2000 and entry.stripe_request_id


def test_connect_options_reach_stripe(processor):
    contact = saved_customer(processor)
    out = charges.charge(
        processor,
        ask(
            contact,
            application_fee="1.50",
            destination="acct_1Connected",
            transfer_group="ORDER42",
            metadata_key=["campaign"],
            metadata_value=["spring"],
        ),
    )
    pi = gateway(processor).retrieve("payment_intents", out.intent_id)
    assert (pi["application_fee_amount"], pi["transfer_data"]["destination"], pi["transfer_group"]) == (
        150,
        "acct_1Connected",
        "ORDER42",
    )
    assert pi["metadata"]["campaign"] == "spring"


@pytest.mark.parametrize(
    ("form", "field"),
    [
        ({"amount": ""}, "amount"),
        ({"amount": "-5"}, "amount"),
        ({"currency": "dollars"}, "currency"),
        ({"currency": "xyz"}, "currency"),  # three letters, but no currency Stripe takes
        ({"amount": "1000000"}, "amount"),  # over Stripe's largest charge, 999,999.99 USD
        ({"amount": "1.005", "currency": "kwd"}, "amount"),  # KWD goes in steps of 0.010
        ({"amount": "10.50", "currency": "isk"}, "amount"),  # ISK in whole krónur
        ({"statement_descriptor_suffix": "x" * 23}, "statement_descriptor_suffix"),
        ({"statement_descriptor_suffix": "BAD*ONE"}, "statement_descriptor_suffix"),
        ({"application_fee": "30", "destination": "acct_1X"}, "application_fee"),
        ({"application_fee": "1"}, "application_fee"),
        ({"destination": "cus_123"}, "destination"),
        ({"expires_after": "2"}, "expires_after"),
        ({"capture": "authorise", "expires_after": "500"}, "expires_after"),
        ({"metadata_key": ["contribution_id"], "metadata_value": ["7"]}, "metadata"),
        ({"description": "bell\x07"}, "description"),
    ],
)
def test_bad_input_refused_before_stripe(processor, form, field):
    from werkzeug.datastructures import MultiDict

    contact = saved_customer(processor)
    data = MultiDict([("amount", "25"), ("currency", "usd")])
    for k, v in form.items():
        data.setlist(k, v if isinstance(v, list) else [v])
    with responses.RequestsMock() as rsps, pytest.raises(ServiceError) as err:
        charges.charge(processor, charges.ChargeRequest.from_form(data, contact_id=contact.id))
    assert err.value.field == field and len(rsps.calls) == 0
    assert db.session.scalar(select(func.count()).select_from(Contribution)) == 0


def test_a_contact_without_a_customer_is_told_what_to_do(processor):
    from admin.models import Contact

    lone = Contact(display_name="No Card", email="no.card@example.org")
    db.session.add(lone)
    db.session.commit()
    with pytest.raises(ServiceError, match="no Stripe customer") as err:
        charges.plan_charge(processor, ask(lone))
    assert err.value.field == "customer_id"


def test_a_charge_naming_only_the_customer_charges_its_linked_contact(processor):
    contact = saved_customer(processor)
    out = charges.charge(
        processor, charges.ChargeRequest(contact_id=None, amount="12.00", customer_id=customer_of(contact))
    )
    assert out.ok and out.contribution.contact_id == contact.id
    c, pay = charges.records_of(processor.id, out.intent_id)
    assert (
        c is not None
        and c.id == out.contribution.id
        and pay is charges.charged_payment(c)
        and pay.amount == 1200
    )
    assert charges.records_of(processor.id, pay.trxn_id) == (c, pay)
    for customer_id, field in (("cus_nobody", "customer_id"), (None, "contact_id")):
        with pytest.raises(ServiceError) as err:
            charges.plan_charge(
                processor, charges.ChargeRequest(contact_id=None, amount=100, customer_id=customer_id)
            )
        assert err.value.field == field


def test_declined_card_fails_the_contribution_with_stripes_words(processor):
    contact = saved_customer(processor, CARD_DECLINED)
    out = charges.charge(processor, ask(contact))
    assert not out.ok and "declined" in out.message and "Stripe request req_" in out.message
    c = db.session.get(Contribution, out.contribution.id)
    assert c.status == "Failed" and "declined" in c.failure_message
    entry = db.session.scalars(select(AuditLog).where(AuditLog.action == "payment.charge")).one()
    assert entry.result == "error" and entry.stripe_request_id in out.message


def test_same_action_twice_charges_once(processor):
    contact = saved_customer(processor)
    first = charges.charge(processor, ask(contact, action_key="double1"))
    second = charges.charge(processor, ask(contact, action_key="double1"))
    assert first.intent_id == second.intent_id
    listed = gateway(processor).list("payment_intents", customer=customer_of(contact))["data"]
    assert len(listed) == 1


def test_capture_a_charge_made_without_an_intent(processor):
    """The seed's two-step Charge (capture=false), captured in part by its ch_ id and recorded at once."""
    from admin.services.intents import ops

    contact = saved_customer(processor)
    ch = gateway(processor).create(
        "charges", {"amount": 4000, "currency": "usd", "customer": customer_of(contact), "capture": False}
    )
    out = ops.capture(processor, ch["id"], amount="30.00")
    assert out.ok and "Captured 30.00 USD of 40.00 USD" in out.message
    pay = db.session.scalar(select(Payment).where(Payment.trxn_id == ch["id"], Payment.refund_id.is_(None)))
    # localstripe releases the rest as a refund of the difference (Stripe: amount_captured); either way 30.00 counts
    c = pay.contribution
    assert c.amount - c.refunded_amount == 3000 or pay.amount == 3000
    with pytest.raises(ServiceError, match="captured already"):
        ops.capture(processor, ch["id"])
