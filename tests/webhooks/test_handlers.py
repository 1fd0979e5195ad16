"""One test (or more) per webhook handler: what each event type does to the records."""

from __future__ import annotations

import copy
import email
import email.policy
import os

import pytest
import stripe_objects as so
from sqlalchemy import select
from stripe_world import OneOff, Renewal

from admin.extensions import db
from admin.models import (
    CardTestingSignal,
    Contact,
    Contribution,
    ContributionRecur,
    OutboxTask,
    Payment,
    StripeCustomer,
    StripePaymentIntent,
)

from .conftest import count, feed


def contribution(**where) -> Contribution:
    return db.session.scalar(select(Contribution).filter_by(**where))


# -- payment_intent.* ----------------------------------------------------------------


def test_payment_intent_events_track_the_intent(offline_processor, world):
    pay = OneOff(world)
    created = copy.deepcopy(pay.intent) | {"status": "requires_payment_method", "latest_charge": None}
    action = copy.deepcopy(pay.intent) | {"status": "requires_action", "latest_charge": None}
    (ev_created,) = feed(
        offline_processor, pay.event("payment_intent.created", created, created=pay.now - 10)
    )
    row = db.session.scalar(select(StripePaymentIntent).filter_by(stripe_intent_id=pay.intent["id"]))
    assert (row.status, row.amount, row.currency) == ("requires_payment_method", 2500, "usd")
    feed(offline_processor, pay.event("payment_intent.requires_action", action, created=pay.now - 5))
    assert row.status == "requires_action"
    # an older event arriving late does not move the intent back
    feed(offline_processor, pay.event("payment_intent.created", created, created=pay.now - 20))
    assert row.status == "requires_action"
    assert ev_created.status == "success"


def test_payment_intent_succeeded_completes_a_one_off_contribution(app, offline_processor, world):
    pay = OneOff(world, amount=2500, fee=103)
    (ev,) = feed(offline_processor, pay.event("payment_intent.succeeded"))
    assert ev.status == "success", ev.last_error
    c = contribution(payment_intent_id=pay.intent["id"])
    assert (c.status, c.amount, c.currency, c.trxn_id) == ("Completed", 2500, "usd", pay.charge["id"])
    assert (c.fee_amount, c.net_amount) == (103, 2397)
    assert c.contact.email == "donor@example.org"
    (p,) = c.payments
    assert (p.trxn_id, p.amount, p.fee, p.net) == (pay.charge["id"], 2500, 103, 2397)
    intent = db.session.scalar(select(StripePaymentIntent).filter_by(stripe_intent_id=pay.intent["id"]))
    assert intent.contribution_id == c.id and intent.status == "succeeded"


def _tracked(pay: OneOff) -> StripePaymentIntent:
    return db.session.scalar(select(StripePaymentIntent).filter_by(stripe_intent_id=pay.intent["id"]))


def test_succeeded_intent_is_tracked_with_its_contribution_and_the_customers_contact(
    offline_processor, world
):
    first = OneOff(world)  # a customer paydesk has not seen: linked while the payment is recorded
    feed(offline_processor, first.event("payment_intent.succeeded"))
    c = contribution(payment_intent_id=first.intent["id"])
    link = db.session.scalar(select(StripeCustomer).filter_by(customer_id=first.customer["id"]))
    assert (_tracked(first).contribution_id, _tracked(first).contact_id) == (c.id, link.contact_id)
    again = OneOff(world)  # the same customer gives again
    again.intent["customer"] = again.charge["customer"] = first.customer["id"]
    feed(offline_processor, again.event("payment_intent.succeeded"))
    c2 = contribution(payment_intent_id=again.intent["id"])
    assert (_tracked(again).contribution_id, _tracked(again).contact_id) == (c2.id, link.contact_id)
    assert count(Contact) == 1 and count(StripeCustomer) == 1


def test_succeeded_intent_of_a_recorded_contribution_takes_the_customers_linked_contact(
    offline_processor, world
):
    """A contribution recorded before its intent's event (another contact's, say a gift made by staff) keeps
    its contact; the intent is tracked with the contact its customer is linked to, as the intent pages show it."""
    pay = OneOff(world)
    feed(offline_processor, pay.event("charge.succeeded"))  # links the customer to its contact
    linked = db.session.scalar(select(StripeCustomer)).contact_id
    giver = Contact(display_name="Someone Else", email="else@example.org")
    db.session.add(giver)
    db.session.flush()
    c = contribution(trxn_id=pay.charge["id"])
    c.contact_id = giver.id
    db.session.commit()
    feed(offline_processor, pay.event("payment_intent.succeeded"))
    assert contribution(trxn_id=pay.charge["id"]).contact_id == giver.id
    assert (_tracked(pay).contribution_id, _tracked(pay).contact_id) == (c.id, linked)


def test_payment_intent_failed_fails_the_pending_contribution(offline_processor, world):
    pay = OneOff(world)
    c = Contribution(
        processor_id=offline_processor.id,
        amount=2500,
        currency="usd",
        status="Pending",
        payment_intent_id=pay.intent["id"],
    )
    db.session.add(c)
    db.session.commit()
    failed = copy.deepcopy(pay.intent) | {
        "status": "requires_payment_method",
        "latest_charge": None,
        "last_payment_error": {
            "message": "Your card was declined.",
            "code": "card_declined",
            "decline_code": "insufficient_funds",
        },
    }
    feed(offline_processor, pay.event("payment_intent.payment_failed", failed))
    assert c.status == "Failed"
    assert c.failure_message == "Your card was declined. (insufficient_funds)"


def test_declined_intent_of_a_known_customer_is_recorded_as_a_failed_contribution(offline_processor, world):
    pay = OneOff(world, amount=4000)
    declined = copy.deepcopy(pay.intent) | {
        "status": "requires_payment_method",
        "latest_charge": None,
        "last_payment_error": {
            "message": "Your card was declined.",
            "code": "card_declined",
            "charge": pay.charge["id"],
        },
    }
    feed(offline_processor, pay.event("payment_intent.payment_failed", declined))
    c = contribution(payment_intent_id=pay.intent["id"])
    assert (c.status, c.amount, c.trxn_id, c.contact.email) == (
        "Failed",
        4000,
        pay.charge["id"],
        "donor@example.org",
    )
    # the matching charge.failed (real Stripe sends both) finds it: still one contribution
    failed = copy.deepcopy(pay.charge) | {"status": "failed", "failure_message": "Your card was declined."}
    feed(offline_processor, pay.event("charge.failed", failed))
    assert count(Contribution) == 1


def test_declined_intent_with_no_customer_records_nothing(offline_processor, world):
    pay = OneOff(world, customer=False)
    declined = copy.deepcopy(pay.intent) | {"status": "requires_payment_method", "latest_charge": None}
    (ev,) = feed(offline_processor, pay.event("payment_intent.payment_failed", declined))
    assert ev.status == "success" and "nothing to record" in ev.status_reason
    assert count(Contribution) == 0 and count(Contact) == 0


def test_payment_intent_canceled_cancels_the_pending_contribution(offline_processor, world):
    pay = OneOff(world)
    c = Contribution(
        processor_id=offline_processor.id,
        amount=2500,
        currency="usd",
        status="Pending",
        payment_intent_id=pay.intent["id"],
    )
    db.session.add(c)
    db.session.commit()
    canceled = copy.deepcopy(pay.intent) | {
        "status": "canceled",
        "cancellation_reason": "abandoned",
        "latest_charge": None,
    }
    feed(offline_processor, pay.event("payment_intent.canceled", canceled))
    assert c.status == "Cancelled" and "abandoned" in c.failure_message


def test_amount_capturable_updated_keeps_the_contribution_pending(offline_processor, world):
    pay = OneOff(world, captured=False)
    held = copy.deepcopy(pay.intent) | {"status": "requires_capture", "capture_method": "manual"}
    feed(offline_processor, pay.event("payment_intent.amount_capturable_updated", held))
    row = db.session.scalar(select(StripePaymentIntent).filter_by(stripe_intent_id=pay.intent["id"]))
    assert row.status == "requires_capture" and row.capture_method == "manual"
    assert count(Contribution) == 0


# -- charge.* --------------------------------------------------------------------------


def test_charge_succeeded_records_the_payment_once(offline_processor, world):
    pay = OneOff(world)
    ev = pay.event("charge.succeeded")
    feed(offline_processor, ev, pay.event("payment_intent.succeeded"))
    assert count(Contribution) == 1
    assert count(Payment) == 1
    assert contribution(trxn_id=pay.charge["id"]).status == "Completed"


def test_uncaptured_charge_waits_for_capture(offline_processor, world):
    pay = OneOff(world, captured=False)
    (ev,) = feed(offline_processor, pay.event("charge.succeeded"))
    assert ev.status == "ignored" and "not captured" in ev.status_reason
    assert count(Payment) == 0
    captured = copy.deepcopy(pay.charge) | {"captured": True, "amount_captured": 2000}  # captured less
    (ev2,) = feed(offline_processor, pay.event("charge.captured", captured))
    assert ev2.status == "success"
    c = contribution(trxn_id=pay.charge["id"])
    assert (c.status, c.amount) == ("Completed", 2000)
    assert [p.amount for p in c.payments] == [2000]


def test_charge_failed_with_customer_fails_the_contribution(offline_processor, world):
    pay = OneOff(world)
    failed = copy.deepcopy(pay.charge) | {
        "status": "failed",
        "paid": False,
        "failure_code": "card_declined",
        "failure_message": "Your card was declined.",
    }
    feed(offline_processor, pay.event("charge.failed", failed))
    c = contribution(payment_intent_id=pay.intent["id"])
    assert c.status == "Failed" and c.failure_message == "Your card was declined. (card_declined)"
    assert count(CardTestingSignal) == 0
    # the donor tries again and succeeds: the same contribution completes
    feed(offline_processor, pay.event("charge.succeeded"))
    assert c.status == "Completed" and c.trxn_id == pay.charge["id"]
    assert count(Contribution) == 1


def test_charge_failed_with_no_customer_and_unknown_intent_is_a_card_testing_signal(offline_processor, world):
    probe = so.charge(
        customer=None,
        payment_intent=so.new_id("pi"),
        amount=100,
        status="failed",
        paid=False,
        failure_code="card_declined",
        failure_message="Your card was declined.",
    )
    (ev,) = feed(offline_processor, so.event("charge.failed", probe))
    assert ev.status == "success" and "card-testing" in ev.status_reason
    signal = db.session.scalar(select(CardTestingSignal))
    assert (signal.charge_id, signal.amount) == (probe["id"], 100)
    assert count(Contact) == 0 and count(Contribution) == 0


def test_partial_then_full_refund(offline_processor, world):
    pay = OneOff(world, amount=5000)
    feed(offline_processor, pay.event("charge.succeeded"))
    r1 = pay.refund(world, 2000)
    feed(offline_processor, pay.event("charge.refunded"))
    c = contribution(trxn_id=pay.charge["id"])
    assert (c.status, c.refunded_amount) == ("Partially refunded", 2000)
    r2 = pay.refund(world, 3000)
    ev = pay.event("charge.refunded")
    feed(offline_processor, ev, copy.deepcopy(ev) | {"id": so.new_id("evt")})  # and a second delivery
    assert (c.status, c.refunded_amount) == ("Refunded", 5000)
    # the FAQ's rule: every row carries the charge id; each refund its own re_ id
    refunds = sorted((p.trxn_id, p.refund_id, p.amount) for p in c.payments if p.amount < 0)
    assert refunds == sorted([(pay.charge["id"], r1["id"], -2000), (pay.charge["id"], r2["id"], -3000)])


@pytest.mark.parametrize("shape", ["older", "current"])
def test_refund_updated_to_failed_gives_the_money_back(offline_processor, world, shape):
    pay = OneOff(world, amount=5000)
    feed(offline_processor, pay.event("charge.succeeded"))
    r = pay.refund(world, 5000)
    feed(offline_processor, pay.event("charge.refunded"))
    c = contribution(trxn_id=pay.charge["id"])
    assert c.status == "Refunded"
    r["status"] = "failed"
    pay.charge["amount_refunded"] = 0
    if shape == "current":  # current API versions embed no refunds in the charge
        pay.charge.pop("refunds")
    feed(offline_processor, so.event("charge.refund.updated", copy.deepcopy(r)))
    assert (c.status, c.refunded_amount) == ("Completed", 0)
    assert [p.status for p in c.payments if p.amount < 0] == ["Cancelled"]


# -- invoice.* -------------------------------------------------------------------------


def test_invoice_finalized_creates_a_pending_recurring_contribution(offline_processor, world):
    ren = Renewal(world)
    (ev,) = feed(offline_processor, ren.events["invoice.finalized"])
    assert ev.status == "success", ev.last_error
    c = contribution(invoice_id=ren.invoice["id"])
    assert (c.status, c.trxn_id, c.amount) == ("Pending", ren.invoice["id"], 1000)
    assert c.recur.subscription_id == ren.subscription["id"]
    assert c.recur.status == "In Progress"


def test_invoice_paid_completes_with_the_charge_as_payment(offline_processor, world):
    ren = Renewal(world, amount=1000, fee=59)
    feed(offline_processor, ren.events["invoice.paid"], ren.events["invoice.payment_succeeded"])
    c = contribution(invoice_id=ren.invoice["id"])
    assert (c.status, c.trxn_id) == ("Completed", ren.invoice["id"])
    (p,) = c.payments
    assert (p.trxn_id, p.amount, p.fee, p.net) == (ren.charge["id"], 1000, 59, 941)
    assert c.recur.subscription_id == ren.subscription["id"]


def test_renewal_with_no_finalized_event_is_created_when_paid(offline_processor, world):
    ren = Renewal(world, shape="older")
    feed(offline_processor, ren.events["invoice.payment_succeeded"])
    c = contribution(invoice_id=ren.invoice["id"])
    assert c.status == "Completed" and [p.trxn_id for p in c.payments] == [ren.charge["id"]]


def test_invoice_payment_failed_then_retry_succeeds(offline_processor, world):
    ren = Renewal(world)
    failed_charge = so.charge(
        customer=ren.customer["id"],
        payment_intent=ren.intent["id"],
        status="failed",
        paid=False,
        failure_code="card_declined",
        failure_message="Your card was declined.",
    )
    world.add(failed_charge)
    ren.intent["latest_charge"] = failed_charge["id"]
    failed_inv = copy.deepcopy(ren.invoice) | {"status": "open", "attempt_count": 1, "amount_paid": 0}
    world.objects[ren.invoice["id"]] = failed_inv
    feed(offline_processor, so.event("invoice.payment_failed", copy.deepcopy(failed_inv)))
    c = contribution(invoice_id=ren.invoice["id"])
    assert c.status == "Failed" and "declined" in c.failure_message
    assert (c.recur.status, c.recur.failure_count) == ("Failing", 1)
    ren.intent["latest_charge"] = ren.charge["id"]
    world.objects[ren.invoice["id"]] = ren.invoice
    feed(offline_processor, ren.events["invoice.paid"])
    assert c.status == "Completed" and c.recur.status == "In Progress"
    # the FAQ's rule: the failed attempt is a Failed payment row on the recurring contribution
    assert [(p.trxn_id, p.status) for p in c.payments] == [
        (failed_charge["id"], "Failed"),
        (ren.charge["id"], "Completed"),
    ]
    assert (c.amount, c.fee_amount, c.refunded_amount) == (ren.invoice["amount_paid"], c.payments[1].fee, 0)


def test_subscription_charge_is_never_a_one_off(offline_processor, world):
    """charge.succeeded for a subscription, current shape (no invoice on charge or intent): found via
    InvoicePayment; older shape: found via the intent's invoice."""
    for shape in ("current", "older"):
        ren = Renewal(world, shape=shape)
        feed(offline_processor, ren.events["charge.succeeded"])
        c = contribution(payment_intent_id=ren.intent["id"])
        assert c.invoice_id == ren.invoice["id"] and c.trxn_id == ren.invoice["id"], shape
        assert c.recur is not None
        assert count(Contribution, Contribution.trxn_id == ren.charge["id"]) == 0


# -- customer.subscription.* -------------------------------------------------------------


def test_subscription_created_updated_deleted(offline_processor, world):
    cus = so.customer(name="Grace Giver", email="grace@example.org")
    sub = so.subscription(customer=cus["id"], amount=1500, interval="month")
    world.add(cus, sub)
    t = sub["created"]
    feed(offline_processor, so.event("customer.subscription.created", copy.deepcopy(sub), created=t))
    r = db.session.scalar(select(ContributionRecur).filter_by(subscription_id=sub["id"]))
    assert (r.amount, r.currency, r.interval, r.status) == (1500, "usd", "month", "In Progress")
    assert r.contact.email == "grace@example.org" and r.next_sched_date is not None
    upd = so.subscription(customer=cus["id"], amount=2500, interval="year", id=sub["id"])
    feed(offline_processor, so.event("customer.subscription.updated", copy.deepcopy(upd), created=t + 10))
    assert (r.amount, r.interval) == (2500, "year")
    gone = copy.deepcopy(upd) | {"status": "canceled", "canceled_at": t + 20, "ended_at": t + 20}
    world.objects[sub["id"]] = gone
    feed(offline_processor, so.event("customer.subscription.deleted", copy.deepcopy(gone), created=t + 20))
    assert r.status == "Cancelled" and r.cancel_date is not None and r.next_sched_date is None
    # a late "updated" (older) is checked against Stripe and cannot revive it
    feed(offline_processor, so.event("customer.subscription.updated", copy.deepcopy(upd), created=t + 15))
    assert r.status == "Cancelled"


def test_past_due_subscription_is_failing(offline_processor, world):
    cus = so.customer()
    sub = so.subscription(customer=cus["id"], status="past_due")
    world.add(cus, sub)
    feed(offline_processor, so.event("customer.subscription.updated", sub))
    assert db.session.scalar(select(ContributionRecur)).status == "Failing"


# -- customer.* ---------------------------------------------------------------------------


def test_customer_updated_and_deleted_follow_the_link(offline_processor, world):
    pay = OneOff(world)
    feed(offline_processor, pay.event("charge.succeeded"))
    contact = db.session.scalar(select(Contact))
    changed = copy.deepcopy(pay.customer) | {"email": "new@example.org", "name": "Ada New"}
    feed(offline_processor, so.event("customer.updated", changed))
    assert (contact.email, contact.display_name) == ("new@example.org", "Ada New")
    feed(offline_processor, so.event("customer.deleted", copy.deepcopy(changed) | {"deleted": True}))
    assert db.session.scalar(select(StripeCustomer)).deleted is True


def test_customer_updated_for_an_unknown_customer_is_ignored(offline_processor, world):
    (ev,) = feed(offline_processor, so.event("customer.updated", so.customer()))
    assert ev.status == "ignored" and "not linked" in ev.status_reason
    assert count(Contact) == 0


def test_contact_is_matched_by_customer_metadata_then_email(offline_processor, world):
    known = Contact(display_name="Known Donor", email="known@example.org")
    db.session.add(known)
    db.session.commit()
    pay = OneOff(world)
    pay.customer["metadata"] = {"contact_id": str(known.id)}
    feed(offline_processor, pay.event("charge.succeeded"))
    assert contribution(trxn_id=pay.charge["id"]).contact_id == known.id
    other = OneOff(world)
    other.customer["email"] = "KNOWN@example.org"
    feed(offline_processor, other.event("charge.succeeded"))
    assert contribution(trxn_id=other.charge["id"]).contact_id == known.id
    assert count(Contact) == 1


# -- checkout.session.completed -------------------------------------------------------------


def test_checkout_session_completes_the_referenced_contribution(offline_processor, world):
    pay = OneOff(world, amount=4200)
    c = Contribution(processor_id=offline_processor.id, amount=4200, currency="usd", status="Pending")
    db.session.add(c)
    db.session.commit()
    session = so.obj(
        "checkout.session",
        id=so.new_id("cs"),
        mode="payment",
        payment_status="paid",
        status="complete",
        client_reference_id=str(c.id),
        payment_intent=pay.intent["id"],
        subscription=None,
        invoice=None,
        customer=pay.customer["id"],
        livemode=False,
        amount_total=4200,
        currency="usd",
    )
    feed(offline_processor, so.event("checkout.session.completed", session))
    assert (c.status, c.trxn_id, c.payment_intent_id) == ("Completed", pay.charge["id"], pay.intent["id"])
    assert count(Contribution) == 1


def _session(pay, c: Contribution, **changes) -> dict:
    """A paid Checkout session (a Payment Link's: the payer chose client_reference_id) naming ``c``."""
    fields = dict(
        id=so.new_id("cs"),
        mode="payment",
        payment_status="paid",
        status="complete",
        client_reference_id=str(c.id),
        payment_intent=pay.intent["id"],
        subscription=None,
        invoice=None,
        customer=pay.customer["id"],
        amount_total=pay.intent["amount"],
        currency="usd",
        livemode=False,
    )
    fields.update(changes)
    return so.obj("checkout.session", **fields)


def _someone_elses(processor, **fields) -> Contribution:
    victim = Contact(display_name="Mary Somerville", email="mary@example.org")
    c = Contribution(
        processor_id=processor.id,
        contact=victim,
        amount=100000,
        currency="usd",
        status="Pending",
        customer_id="cus_mary",
        source="donation form",
    )
    for k, v in fields.items():
        setattr(c, k, v)
    db.session.add(c)
    db.session.commit()
    return c


@pytest.mark.parametrize("case", ["amount", "currency", "customer", "paid already"])
def test_checkout_session_cannot_complete_someone_elses_contribution(offline_processor, world, case):
    from admin.models import UnmatchedPayment

    pay = OneOff(world, amount=500)
    named = {
        "amount": lambda: _someone_elses(offline_processor, customer_id=None),
        "currency": lambda: _someone_elses(offline_processor, amount=500, currency="eur", customer_id=None),
        "customer": lambda: _someone_elses(offline_processor, amount=500),
        "paid already": lambda: _someone_elses(
            offline_processor,
            amount=500,
            customer_id=None,
            status="Completed",
            payment_intent_id="pi_marys_own",
            trxn_id="ch_marys_own",
        ),
    }[case]()
    before = (named.status, named.payment_intent_id, named.trxn_id, named.amount)
    event = so.event("checkout.session.completed", _session(pay, named))
    (row,) = feed(offline_processor, event)
    assert row.status == "success", row.last_error
    assert f"names contribution {named.id}, which it does not match" in row.status_reason

    db.session.expire_all()
    named = db.session.get(Contribution, named.id)
    assert (named.status, named.payment_intent_id, named.trxn_id, named.amount) == before
    assert named.payments == []
    paid = contribution(trxn_id=pay.charge["id"])
    assert (paid.status, paid.amount, paid.contact.email) == ("Completed", 500, "donor@example.org")
    assert count(OutboxTask, OutboxTask.kind == "receipt") == 0  # no receipt, to anyone
    (kept,) = db.session.scalars(select(UnmatchedPayment)).all()
    assert (kept.named_contribution_id, kept.contribution_id, kept.amount, kept.currency) == (
        named.id,
        paid.id,
        500,
        "usd",
    )
    feed(offline_processor, so.event("checkout.session.completed", _session(pay, named, id=kept.session_id)))
    assert count(UnmatchedPayment) == 1  # a replay of the same session: noted once


def test_checkout_session_matching_its_contribution_still_completes_it(offline_processor, world):
    pay = OneOff(world, amount=500)
    c = _someone_elses(offline_processor, amount=500, customer_id=pay.customer["id"])
    (row,) = feed(offline_processor, so.event("checkout.session.completed", _session(pay, c)))
    assert row.status == "success" and not row.status_reason
    db.session.expire_all()
    assert db.session.get(Contribution, c.id).status == "Completed"
    assert count(OutboxTask, OutboxTask.kind == "receipt") == 1


# -- side effects: receipts and customer metadata ---------------------------------------------


def test_completed_contribution_sends_one_receipt_and_updates_customer_metadata(
    app, offline_processor, world
):
    pay = OneOff(world)
    feed(offline_processor, pay.event("charge.succeeded"), pay.event("payment_intent.succeeded"))
    c = contribution(trxn_id=pay.charge["id"])
    files = os.listdir(app.config["OUTBOX_DIR"])
    assert files == [f"receipt-{c.id}.eml"]
    with open(os.path.join(app.config["OUTBOX_DIR"], files[0]), "rb") as fh:
        msg = email.message_from_binary_file(fh, policy=email.policy.default)
    assert msg["To"] == "donor@example.org"
    assert "25.00 USD" in msg.get_body(("plain",)).get_content()
    assert "25.00 USD" in msg.get_body(("html",)).get_content()
    assert c.receipt_sent_at is not None
    path, form = [u for u in world.updates if u[0] == f"/v1/customers/{pay.customer['id']}"][0]
    assert form["metadata[contact_id]"] == str(c.contact_id)
    assert form["metadata[paydesk_version]"]
    assert form["metadata[contact_url]"].endswith(f"/contacts/{c.contact_id}")
    assert form["description"] == "paydesk: paydesk"  # the FAQ: "paydesk: <site name>"


def test_replay_with_no_receipt_sends_none(app, offline_processor, world):
    pay = OneOff(world)
    feed(offline_processor, pay.event("charge.succeeded"), no_receipt=True)
    assert contribution(trxn_id=pay.charge["id"]).status == "Completed"
    assert not os.path.exists(app.config["OUTBOX_DIR"]) or os.listdir(app.config["OUTBOX_DIR"]) == []
    assert count(OutboxTask, OutboxTask.kind == "receipt") == 0


# -- handlers check what they store ------------------------------------------------------------


@pytest.mark.postgres
@pytest.mark.parametrize(
    "field, value",
    [("amount", "2500"), ("amount", 25.5), ("amount", True), ("amount", 10**30), ("currency", 840)],
)
def test_intent_with_a_malformed_amount_ends_in_error(offline_processor, world, backend, field, value):
    pay = OneOff(world)
    bad = copy.deepcopy(pay.intent) | {
        "status": "requires_payment_method",
        "latest_charge": None,
        field: value,
    }
    (ev,) = feed(offline_processor, pay.event("payment_intent.created", bad))
    assert ev.status == "error"
    assert f"payment_intent {pay.intent['id']}: {field} is not" in ev.last_error
    assert count(StripePaymentIntent) == 0


@pytest.mark.postgres
@pytest.mark.parametrize(
    "field, value", [("amount", "2500"), ("amount_captured", 12.5), ("amount_refunded", "0")]
)
def test_charge_with_a_malformed_amount_ends_in_error_and_listings_still_work(
    app, runner, offline_processor, world, backend, field, value
):
    pay = OneOff(world)
    pay.charge[field] = value  # what Stripe would answer if asked again, too
    (ev,) = feed(offline_processor, pay.event("charge.succeeded"))
    assert ev.status == "error" and f"charge {pay.charge['id']}: {field} is not an integer" in ev.last_error
    assert count(Contribution) == 0 and count(Payment) == 0
    for args in (
        ["contributions", "list"],
        ["payments", "list"],
        ["intents", "list"],
        ["events", "list", "--type", "all", "--status", "error"],
    ):
        result = runner.invoke(args=args)
        assert result.exit_code == 0 and "Traceback" not in result.output, result.output
