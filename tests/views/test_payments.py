"""One payment's page and refunding from it (and from the contribution's page): confirm the amount, then
refund exactly what the confirmation showed (stored on the server, bound to a single-use token of the user
who saw it); the negative payment is in the answer at once; over-refunds are refused without asking Stripe;
a step=run without a valid token refunds nothing; viewers see no form and get 403."""

from __future__ import annotations

import re
from html import unescape

import responses
from confirm_support import confirm
from payments_support import paid_one_off
from sqlalchemy import select

from admin.extensions import db
from admin.models import AuditLog, Payment
from admin.services.payments import refunds

HTMX = {"HX-Request": "true"}


def post(client, auth, url: str, data: dict, page: str):
    token = auth.token(page)
    return client.post(url, data={**data, "csrf_token": token}, headers={**HTMX, "X-CSRFToken": token})


def text(resp) -> str:
    return re.sub(r"\s+", " ", unescape(resp.get_data(as_text=True)))


def test_partial_refund_confirmed_then_shown(client, auth, processor):
    auth.login("op@example.org", "operator")
    c, charge = paid_one_off(processor, 5000)
    pay = c.payments[0]
    page = client.get(f"/payments/{pay.id}")
    body = text(page)
    assert page.status_code == 200 and charge["id"] in body and "50.00 USD left to refund" in body
    assert 'name="amount"' in body and "Amount to refund (USD)" in body

    ask = post(
        client,
        auth,
        f"/payments/{pay.id}/refund",
        {"amount": "12.50", "reason": "duplicate"},
        f"/payments/{pay.id}",
    )
    body = text(ask)
    assert ask.status_code == 200 and "Refund 12.50 USD?" in body and "37.50 USD stays refundable" in body
    assert 'name="amount"' not in ask.get_data(as_text=True)  # nothing to post again but the token
    assert db.session.scalar(select(Payment).where(Payment.refund_id.is_not(None))) is None  # not yet

    token = auth.token(f"/payments/{pay.id}")
    done = confirm(client, f"/payments/{pay.id}/refund", ask, {"csrf_token": token}, headers=HTMX)
    body = text(done)
    assert done.status_code == 200 and "Refunded 12.50 USD" in body and "-12.50 USD" in body
    assert 'id="payment-money"' in body and "37.50 USD left to refund" in body
    row = db.session.scalar(select(Payment).where(Payment.refund_id.is_not(None)))
    assert (row.amount, row.trxn_id) == (-1250, charge["id"])
    entry = db.session.scalar(select(AuditLog).where(AuditLog.action == "payment.refund"))
    assert (
        entry.result == "ok" and entry.actor == "op@example.org" and entry.parameters["reason"] == "duplicate"
    )


def test_over_refund_refused_with_the_field_named(client, auth, processor):
    auth.login("op@example.org", "operator")
    c, _ = paid_one_off(processor, 2000)
    pay = c.payments[0]
    with responses.RequestsMock() as rsps:
        resp = post(client, auth, f"/payments/{pay.id}/refund", {"amount": "20.01"}, f"/contributions/{c.id}")
        assert resp.status_code == 422 and "Amount: 20.01 USD is more than the 20.00 USD left" in text(resp)
        assert "token" not in resp.get_data(as_text=True)  # no confirmation to run
        assert not rsps.calls


def test_contribution_page_offers_the_refund(client, auth, processor):
    auth.login("op@example.org", "operator")
    c, charge = paid_one_off(processor, 3000)
    body = text(client.get(f"/contributions/{c.id}"))
    assert f"Refund {charge['id']}" in body and "Reverse the transfer" in body and "Metadata" in body


def test_viewer_sees_no_refund_and_is_refused(client, auth, processor):
    c, _ = paid_one_off(processor, 3000)
    pay = c.payments[0]
    auth.login("viewer@example.org", "viewer")
    body = text(client.get(f"/payments/{pay.id}"))
    assert "Refund…" not in body and 'name="amount"' not in body
    resp = post(
        client, auth, f"/payments/{pay.id}/refund", {"amount": "1", "step": "run"}, f"/payments/{pay.id}"
    )
    assert resp.status_code == 403
    assert db.session.scalar(select(Payment).where(Payment.refund_id.is_not(None))) is None


def test_refund_without_javascript_confirms_on_a_page(client, auth, processor):
    auth.login("op@example.org", "operator")
    c, _ = paid_one_off(processor, 3000)
    pay = c.payments[0]
    token = auth.token(f"/payments/{pay.id}")
    ask = client.post(f"/payments/{pay.id}/refund", data={"amount": "5", "csrf_token": token})
    assert (
        ask.status_code == 200
        and "Yes, refund 5.00 USD" in text(ask)
        and "<html" in ask.get_data(as_text=True)
    )
    resp = confirm(client, f"/payments/{pay.id}/refund", ask, {"csrf_token": token})
    assert resp.status_code == 302 and resp.headers["Location"].endswith(f"/payments/{pay.id}")
    assert "Refunded 5.00 USD" in text(client.get(resp.headers["Location"]))


def _ask(client, auth, pay, data: dict):
    return post(client, auth, f"/payments/{pay.id}/refund", data, f"/payments/{pay.id}")


def test_refund_run_without_a_valid_token_refunds_nothing(client, auth, processor, service_calls):
    """The form's fields posted again with step=run (the old way), a made-up token or an empty one: 400 and no
    refund service call; the money box says why."""
    refund_calls = service_calls(refunds, "refund")
    auth.login("op@example.org", "operator")
    c, _ = paid_one_off(processor, 3000)
    pay = c.payments[0]
    _ask(client, auth, pay, {"amount": "5"})  # a confirmation exists, but none of these carries its token
    for extra in ({}, {"token": "forged"}, {"token": ""}):
        resp = _ask(client, auth, pay, {"amount": "5", "reason": "duplicate", "step": "run", **extra})
        body = text(resp)
        assert resp.status_code == 400 and "Nothing was started" in body and 'id="payment-money"' in body
    assert refund_calls == []
    assert db.session.scalar(select(Payment).where(Payment.refund_id.is_not(None))) is None


def test_a_tampered_refund_repost_refunds_what_was_shown(client, auth, processor, service_calls):
    """The token with another amount, reason, options, metadata and even another payment's address posted
    alongside: exactly the stored refund runs."""
    refund_calls = service_calls(refunds, "refund")
    auth.login("op@example.org", "operator")
    c, charge = paid_one_off(processor, 5000)
    other, _ = paid_one_off(processor, 5000)
    pay = c.payments[0]
    ask = _ask(
        client, auth, pay, {"amount": "3", "reason": "duplicate", "metadata_key": "k", "metadata_value": "v"}
    )
    assert "Refund 3.00 USD?" in text(ask)
    tampered = {
        "csrf_token": auth.token(f"/payments/{pay.id}"),
        "amount": "50",
        "reason": "fraudulent",
        "reverse_transfer": "1",
        "metadata_key": "k",
        "metadata_value": "changed",
        "payment_id": str(other.payments[0].id),
    }
    done = confirm(client, f"/payments/{other.payments[0].id}/refund", ask, tampered, headers=HTMX)
    assert done.status_code == 200 and "Refunded 3.00 USD" in text(done), text(done)
    assert [(r.payment_id, r.amount, r.reason, r.reverse_transfer, r.metadata) for r in refund_calls] == [
        (pay.id, 300, "duplicate", False, {"k": "v"})
    ]
    rows = db.session.scalars(select(Payment).where(Payment.refund_id.is_not(None))).all()
    assert [(r.amount, r.trxn_id) for r in rows] == [(-300, charge["id"])]


def test_a_refund_token_works_once(client, auth, processor, service_calls):
    refund_calls = service_calls(refunds, "refund")
    auth.login("op@example.org", "operator")
    c, _ = paid_one_off(processor, 5000)
    pay = c.payments[0]
    ask = _ask(client, auth, pay, {"amount": "4"})
    token = auth.token(f"/payments/{pay.id}")
    first = confirm(client, f"/payments/{pay.id}/refund", ask, {"csrf_token": token}, headers=HTMX)
    assert first.status_code == 200 and "Refunded 4.00 USD" in text(first)
    again = confirm(client, f"/payments/{pay.id}/refund", ask, {"csrf_token": token}, headers=HTMX)
    assert (
        again.status_code == 400
        and "used already" in text(again)
        and "46.00 USD left to refund" in text(again)
    )
    assert len(refund_calls) == 1
    assert len(db.session.scalars(select(Payment).where(Payment.refund_id.is_not(None))).all()) == 1


def test_a_refund_token_is_its_users_only(client, auth, processor, service_calls):
    refund_calls = service_calls(refunds, "refund")
    auth.login("op@example.org", "operator")
    c, _ = paid_one_off(processor, 5000)
    pay = c.payments[0]
    ask = _ask(client, auth, pay, {"amount": "4"})
    auth.logout()
    auth.login("admin@example.org", "admin")
    other = confirm(
        client,
        f"/payments/{pay.id}/refund",
        ask,
        {"csrf_token": auth.token(f"/payments/{pay.id}")},
        headers=HTMX,
    )
    assert other.status_code == 400 and "shown to someone else" in text(other)
    assert refund_calls == []


def test_a_refund_confirmed_twice_cannot_refund_more_than_is_left(client, auth, processor):
    """Two confirmations shown side by side, each for most of the charge: the second, run after the first,
    is checked again against what is left and refused before Stripe is asked."""
    auth.login("op@example.org", "operator")
    c, _ = paid_one_off(processor, 2000)
    pay = c.payments[0]
    first, second = (_ask(client, auth, pay, {"amount": "15"}) for _ in range(2))
    token = auth.token(f"/payments/{pay.id}")
    assert "Refunded 15.00 USD" in text(
        confirm(client, f"/payments/{pay.id}/refund", first, {"csrf_token": token}, headers=HTMX)
    )
    late = confirm(client, f"/payments/{pay.id}/refund", second, {"csrf_token": token}, headers=HTMX)
    assert late.status_code == 422 and "15.00 USD is more than the 5.00 USD left" in text(late)
    assert len(db.session.scalars(select(Payment).where(Payment.refund_id.is_not(None))).all()) == 1
