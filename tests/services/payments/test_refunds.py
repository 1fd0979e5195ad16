"""Refunds against localstripe: in full and in part, over-refund refused before Stripe is asked, Stripe's
refusal shown with its request id, the idempotency key reused on a retry, and one row per refund whether the
webhook comes before or after the page's own write."""

from __future__ import annotations

import threading

import pytest
import responses
from payments_support import paid_one_off
from sqlalchemy import select

from admin.errors import ServiceError
from admin.extensions import db
from admin.models import AuditLog, Contribution, Payment, PaymentProcessor
from admin.services.core.stripe_reader import StripeReader, write_after_reading
from admin.services.payments import refunds
from admin.services.records import contributions
from admin.services.settings.processors import gateway
from admin.stripe_gateway import Gateway


def charge_payment(c: Contribution) -> Payment:
    return next(p for p in c.payments if not p.refund_id)


def ask(pay: Payment, **form) -> refunds.RefundRequest:
    return refunds.RefundRequest.from_form({**form}, payment_id=pay.id)


def test_partial_then_the_rest(processor):
    c, charge = paid_one_off(processor, 5000)
    pay = charge_payment(c)
    out = refunds.refund(
        processor, ask(pay, amount="20.00", reason="requested_by_customer", metadata_key=None)
    )
    assert out.refund_id.startswith("re_") and out.recorded_now
    c = db.session.get(Contribution, c.id)
    assert (c.status, c.refunded_amount) == ("Partially refunded", 2000)
    row = db.session.scalar(select(Payment).where(Payment.refund_id == out.refund_id))
    assert (row.trxn_id, row.charge_id, row.amount, row.status) == (
        charge["id"],
        charge["id"],
        -2000,
        "Refunded",
    )
    stripe_refund = gateway(processor).retrieve("refunds", out.refund_id)
    assert (stripe_refund["amount"], stripe_refund["reason"]) == (2000, "requested_by_customer")

    second = refunds.refund(processor, ask(pay))  # empty amount: all that is left
    c = db.session.get(Contribution, c.id)
    assert (c.status, c.refunded_amount) == ("Refunded", 5000)
    assert sorted(p.amount for p in c.payments) == [-3000, -2000, 5000]
    entry = db.session.scalars(
        select(AuditLog).where(AuditLog.action == "payment.refund").order_by(AuditLog.id.desc())
    ).first()
    assert entry.result == "ok" and entry.stripe_request_id and entry.parameters["refund"] == second.refund_id
    assert entry.object_type == "contribution" and entry.object_id == str(c.id)


def test_over_refund_refused_before_stripe(processor):
    c, _ = paid_one_off(processor, 3000)
    pay = charge_payment(c)
    refunds.refund(processor, ask(pay, amount="25"))
    with responses.RequestsMock() as rsps:  # any request to Stripe would fail this test
        for amount in ("5.01", "100"):
            with pytest.raises(ServiceError) as err:
                refunds.refund(processor, ask(pay, amount=amount))
            assert err.value.field == "amount" and "5.00 USD left to refund" in err.value.message
        assert len(rsps.calls) == 0
    refunds.refund(processor, ask(pay))
    with pytest.raises(ServiceError, match="refunded in full already"):
        refunds.refund(processor, ask(pay, amount="1"))


@pytest.mark.parametrize(
    ("form", "field"),
    [
        ({"amount": "0"}, "amount"),
        ({"amount": "1.234"}, "amount"),
        ({"amount": "ten"}, "amount"),
        ({"reason": "changed_mind"}, "reason"),
        ({"metadata_key": ["a" * 41], "metadata_value": ["x"]}, "metadata"),
        ({"metadata_key": [""], "metadata_value": ["orphan"]}, "metadata"),
    ],
)
def test_bad_input_named(processor, form, field):
    c, _ = paid_one_off(processor, 3000)
    pay = charge_payment(c)
    from werkzeug.datastructures import MultiDict

    with pytest.raises(ServiceError) as err:
        req = refunds.RefundRequest.from_form(
            MultiDict([(k, x) for k, v in form.items() for x in (v if isinstance(v, list) else [v])]),
            payment_id=pay.id,
        )
        refunds.plan_refund(req)
    assert err.value.field == field


def test_a_refund_row_or_failed_payment_is_not_refundable(processor):
    c, _ = paid_one_off(processor, 3000)
    out = refunds.refund(processor, ask(charge_payment(c), amount="10"))
    with pytest.raises(ServiceError, match="is a refund"):
        refunds.plan_refund(refunds.RefundRequest(payment_id=out.payment.id))


def test_stripe_refusal_shows_message_and_request_id(processor):
    c, charge = paid_one_off(processor, 3000)
    pay = charge_payment(c)
    gateway(processor).create(
        "refunds", {"charge": charge["id"], "amount": 2500}
    )  # in Stripe, not yet in paydesk
    with pytest.raises(ServiceError) as err:
        refunds.refund(processor, ask(pay, amount="10"))
    assert (
        "greater than unrefunded amount" in err.value.message and "Stripe request req_" in err.value.message
    )
    entry = db.session.scalars(select(AuditLog).where(AuditLog.action == "payment.refund")).one()
    assert (
        entry.result == "error" and entry.stripe_request_id and entry.stripe_request_id in err.value.message
    )
    assert db.session.scalar(select(Payment).where(Payment.refund_id.is_not(None))) is None


def test_retry_sends_the_same_idempotency_key(processor, monkeypatch):
    """The same staff action sent again (a double submit, or a retry after a lost answer) carries the same
    idempotency key, so Stripe refunds once (the gateway's own retries keep the key: test_stripe_gateway)."""
    c, charge = paid_one_off(processor, 4000)
    pay = charge_payment(c)
    keys: list[str] = []
    real = Gateway.call

    def spy(self, resource, method, *args, params=None, idempotency_key=None):
        if resource == "refunds" and method == "create":
            keys.append(idempotency_key)
        return real(self, resource, method, *args, params=params, idempotency_key=idempotency_key)

    monkeypatch.setattr(Gateway, "call", spy)
    first = refunds.refund(processor, ask(pay, amount="10", action_key="form123"))
    # the same form posted again (double submit): Stripe answers with the same refund; paydesk has it once
    db.session.delete(db.session.get(Payment, first.payment.id))  # as if the first answer never came back
    db.session.commit()
    again = refunds.refund(processor, ask(pay, amount="10", action_key="form123"))
    assert again.refund_id == first.refund_id and keys[0] == keys[1]
    assert len(gateway(processor).list("refunds", charge=charge["id"])["data"]) == 1


def test_webhook_after_the_page_adds_nothing(processor):
    c, charge = paid_one_off(processor, 5000)
    out = refunds.refund(processor, ask(charge_payment(c), amount="15"))
    reader = StripeReader(processor)
    fresh = reader.get("charges", charge["id"])
    write_after_reading(
        reader, lambda: contributions.add_charge_payment(reader, db.session.get(Contribution, c.id), fresh)
    )  # what charge.refunded does
    db.session.commit()
    c = db.session.get(Contribution, c.id)
    assert [p.amount for p in c.payments].count(-1500) == 1 and c.refunded_amount == 1500
    assert out.recorded_now


def test_webhook_before_the_page_is_found(processor, monkeypatch):
    """The webhook recorded the refund while the page was waiting for Stripe's answer: the page's write finds
    that row (by the re_ id) and says so."""
    c, charge = paid_one_off(processor, 5000)
    real_record = contributions.record_refund

    def webhook_first(contribution, charge_id, refund):
        reader = StripeReader(processor)
        fresh = reader.get("charges", charge_id)
        contributions.add_charge_payment(reader, contribution, fresh)
        return real_record(contribution, charge_id, refund)

    monkeypatch.setattr(contributions, "record_refund", webhook_first)
    out = refunds.refund(processor, ask(charge_payment(c), amount="15"))
    c = db.session.get(Contribution, c.id)
    assert [p.amount for p in c.payments].count(-1500) == 1 and not out.recorded_now
    assert "webhook had recorded it already" in out.message


@pytest.mark.postgres
def test_two_refunds_of_one_charge_at_once_cannot_both_pass_the_check(app, processor, monkeypatch):
    """Two staff members refund 40.00 and 30.00 of one 50.00 charge at the same moment. The first holds the
    charge while Stripe is asked; the second, asking meanwhile (from its own thread and session), is refused
    before Stripe is asked instead of passing the over-refund check on the same 50.00; tried again once the
    first is recorded, it is refused for what is then left."""
    c, charge = paid_one_off(processor, 5000)
    pay_id, ppid = charge_payment(c).id, processor.id
    db.session.commit()
    sent: list[int] = []
    first_at_stripe, second_done = threading.Event(), threading.Event()
    real = Gateway.call

    def slow_stripe(self, resource, method, *args, params=None, idempotency_key=None):
        if resource == "refunds" and method == "create":
            sent.append(params["amount"])
            if len(sent) == 1:  # the first refund waits at Stripe until the second has had its answer
                first_at_stripe.set()
                second_done.wait(20)
        return real(self, resource, method, *args, params=params, idempotency_key=idempotency_key)

    monkeypatch.setattr(Gateway, "call", slow_stripe)
    answers: dict[str, object] = {}

    def staff(name: str, amount: str) -> None:
        with app.app_context():
            try:
                proc = db.session.get_one(PaymentProcessor, ppid)
                answers[name] = refunds.refund(proc, refunds.RefundRequest(payment_id=pay_id, amount=amount))
            except ServiceError as err:
                answers[name] = err
            finally:
                db.session.remove()

    first = threading.Thread(target=staff, args=("first", "40.00"))
    first.start()
    assert first_at_stripe.wait(20)
    second = threading.Thread(target=staff, args=("second", "30.00"))
    second.start()
    second.join(20)
    second_done.set()
    first.join(20)

    assert isinstance(answers["first"], refunds.RefundOutcome), answers
    refused = answers["second"]
    assert isinstance(refused, ServiceError) and "being sent to Stripe right now" in refused.message
    assert sent == [4000]  # the second never reached Stripe
    with pytest.raises(ServiceError, match="more than the 10.00 USD left"):
        refunds.refund(processor, refunds.RefundRequest(payment_id=pay_id, amount="30.00"))
    assert sent == [4000]
    db.session.expire_all()
    c = db.session.get(Contribution, c.id)
    assert c.refunded_amount == 4000
    assert db.session.get(Payment, pay_id).refund_claimed_at is None  # free for the next refund
    assert refunds.refund(processor, refunds.RefundRequest(payment_id=pay_id)).payment.amount == -1000


def test_a_refund_stripe_refuses_frees_the_charge(processor):
    c, charge = paid_one_off(processor, 3000)
    pay = charge_payment(c)
    gateway(processor).create(
        "refunds", {"charge": charge["id"], "amount": 2500}
    )  # in Stripe, not in paydesk
    with pytest.raises(ServiceError, match="greater than unrefunded amount"):
        refunds.refund(processor, ask(pay, amount="10"))
    assert db.session.get(Payment, pay.id).refund_claimed_at is None
    assert refunds.refund(processor, ask(pay, amount="5")).refund_id.startswith("re_")
