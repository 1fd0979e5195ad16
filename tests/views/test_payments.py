"""One payment's page and refunding from it (and from the contribution's page): confirm the amount, then
refund; the negative payment is in the answer at once; over-refunds are refused without asking Stripe;
viewers see no form and get 403."""

from __future__ import annotations

import re
from html import unescape

import responses
from payments_support import paid_one_off
from sqlalchemy import select

from admin.extensions import db
from admin.models import Payment

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
        {"amount": "12.50", "reason": "duplicate", "action_key": "view1"},
        f"/payments/{pay.id}",
    )
    body = text(ask)
    assert ask.status_code == 200 and "Refund 12.50 USD?" in body and "37.50 USD stays refundable" in body
    assert db.session.scalar(select(Payment).where(Payment.refund_id.is_not(None))) is None  # not yet

    done = post(
        client,
        auth,
        f"/payments/{pay.id}/refund",
        {"amount": "12.50", "reason": "duplicate", "action_key": "view1", "step": "run"},
        f"/payments/{pay.id}",
    )
    body = text(done)
    assert done.status_code == 200 and "Refunded 12.50 USD" in body and "-12.50 USD" in body
    assert 'id="payment-money"' in body and "37.50 USD left to refund" in body
    row = db.session.scalar(select(Payment).where(Payment.refund_id.is_not(None)))
    assert (row.amount, row.trxn_id) == (-1250, charge["id"])


def test_over_refund_refused_with_the_field_named(client, auth, processor):
    auth.login("op@example.org", "operator")
    c, _ = paid_one_off(processor, 2000)
    pay = c.payments[0]
    with responses.RequestsMock() as rsps:
        for step in ("", "run"):
            resp = post(
                client,
                auth,
                f"/payments/{pay.id}/refund",
                {"amount": "20.01", "step": step},
                f"/contributions/{c.id}",
            )
            assert resp.status_code == 422 and "Amount: 20.01 USD is more than the 20.00 USD left" in text(
                resp
            )
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
    resp = client.post(f"/payments/{pay.id}/refund", data={"amount": "5", "csrf_token": token})
    assert (
        resp.status_code == 200
        and "Yes, refund 5.00 USD" in text(resp)
        and "<html" in resp.get_data(as_text=True)
    )
    resp = client.post(f"/payments/{pay.id}/refund", data={"amount": "5", "step": "run", "csrf_token": token})
    assert resp.status_code == 302 and resp.headers["Location"].endswith(f"/payments/{pay.id}")
    assert "Refunded 5.00 USD" in text(client.get(resp.headers["Location"]))
