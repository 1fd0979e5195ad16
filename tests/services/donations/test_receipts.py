"""Receipts: HTML with a plain-text alternative; none for a form whose receipts are off."""

from __future__ import annotations

from datetime import datetime

from donate_support import make_form

from admin.extensions import db
from admin.models import Contact, Contribution, ContributionRecur
from admin.services.donations.receipts import build_receipt


def _gift(processor, form=None, recur=None) -> Contribution:
    n = db.session.query(Contribution).count() + 1
    contact = Contact(display_name="Ada Lovelace", email="ada@example.org")
    c = Contribution(
        processor_id=processor.id,
        contact=contact,
        amount=2500,
        currency="usd",
        status="Completed",
        trxn_id=f"ch_receipt{n}",
        receive_date=datetime(2026, 11, 3, 12, 0),
        donation_form_id=form.id if form else None,
        recur=recur,
    )
    db.session.add(c)
    db.session.commit()
    return c


def test_receipt_is_html_with_a_plain_text_alternative(app, offline_processor):
    app.config["SITE_NAME"] = "Friends of the Library"
    c = _gift(offline_processor, make_form(offline_processor))
    msg = build_receipt(c)
    assert msg["To"] == "ada@example.org" and "Friends of the Library" in msg["Subject"]
    assert msg.get_content_type() == "multipart/alternative"
    text = msg.get_body(("plain",)).get_content()
    html = msg.get_body(("html",)).get_content()
    for body in (text, html):
        assert "Friends of the Library" in body and "25.00 USD" in body and "03 November 2026" in body
        assert "One-off" in body and "ch_receipt1" in body
    assert f"Reference:  {c.id}\n" in text and f"<td>{c.id}</td>" in html  # a form's gift: no contact id
    assert html.lstrip().startswith("<!doctype html>") and "<table" in html


def test_recurring_receipt_says_monthly(app, offline_processor):
    recur = ContributionRecur(
        processor_id=offline_processor.id,
        subscription_id="sub_r1",
        amount=2500,
        currency="usd",
        interval="month",
    )
    msg = build_receipt(_gift(offline_processor, recur=recur))
    assert "Monthly" in msg.get_body(("plain",)).get_content()


def test_no_receipt_when_the_form_has_receipts_off(app, offline_processor):
    quiet = make_form(offline_processor, slug="quiet", receipts=False)
    assert build_receipt(_gift(offline_processor, quiet)) is None
    recur = ContributionRecur(
        processor_id=offline_processor.id,
        subscription_id="sub_r2",
        amount=2500,
        currency="usd",
        interval="month",
        donation_form_id=quiet.id,
    )
    assert build_receipt(_gift(offline_processor, recur=recur)) is None  # renewals of that form too
