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


def test_receipt_boundary_is_never_a_line_of_its_bodies(app, offline_processor, monkeypatch):
    import email
    import email.policy
    import random

    # The first boundary drawn is a line of the plain text (the site's name ends it): another one is used.
    taken = "===============0000000000000000001=="
    app.config["SITE_NAME"] = f"--{taken}"
    draws = iter([1, 2])
    monkeypatch.setattr(random, "randrange", lambda *_a, **_k: next(draws))
    msg = build_receipt(_gift(offline_processor))
    raw = bytes(msg)
    assert msg.get_boundary() != taken
    parsed = email.message_from_bytes(raw, policy=email.policy.default)
    assert [p.get_content_type() for p in parsed.iter_parts()] == ["text/plain", "text/html"]
    text = parsed.get_body(("plain",)).get_content()
    assert text.startswith("Dear Ada Lovelace,") and text.endswith(f"\n--{taken}\n")
    assert f"--{taken}" in parsed.get_body(("html",)).get_content()


def test_receipt_bytes_keep_one_boundary_and_headers_in_order(app, offline_processor):
    msg = build_receipt(_gift(offline_processor))
    raw = bytes(msg)
    head, _, body = raw.partition(b"\n\n")
    names = [line.split(b":")[0] for line in head.split(b"\n") if line and not line.startswith(b" ")]
    assert names == [b"From", b"To", b"Subject", b"MIME-Version", b"Content-Type"]
    boundary = msg.get_boundary()
    assert boundary and boundary.startswith("=" * 15) and boundary.endswith("==")
    assert f'boundary="{boundary}"'.encode() in head
    assert body.count(f"--{boundary}".encode()) == 3  # before each of the two parts, and the end
