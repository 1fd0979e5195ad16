"""The contact page's money: charge a saved card (confirm, then charge), saved cards (listed after the page,
add / default / remove), and a gift link for a known donor; viewers see none of the buttons."""

from __future__ import annotations

import re
from html import unescape

from donate_support import make_form
from payments_support import card, customer_of, saved_customer
from sqlalchemy import select

from admin.extensions import db
from admin.models import Contribution, DonorLink
from admin.services.payments import cards

HTMX = {"HX-Request": "true"}


def post(client, auth, url: str, data: dict, page: str, htmx: bool = True):
    token = auth.token(page)
    headers = {**HTMX, "X-CSRFToken": token} if htmx else {}
    return client.post(url, data={**data, "csrf_token": token}, headers=headers)


def text(resp) -> str:
    return re.sub(r"\s+", " ", unescape(resp.get_data(as_text=True)))


def test_charge_a_saved_customer_from_the_contact_page(client, auth, processor):
    auth.login("op@example.org", "operator")
    contact = saved_customer(processor)
    page = f"/contacts/{contact.id}"
    body = text(client.get(page))
    assert (
        "Charge a saved card" in body and "Statement descriptor suffix" in body and "Authorise only" in body
    )
    form = {
        "amount": "42",
        "currency": "usd",
        "description": "Gala table",
        "capture": "now",
        "action_key": "c1",
        "customer_id": customer_of(contact),
        "metadata_key": "table",
        "metadata_value": "7",
    }
    ask = post(client, auth, f"/contacts/{contact.id}/charge", form, page)
    assert (
        ask.status_code == 200 and "Charge 42.00 USD?" in text(ask) and "Yes, charge 42.00 USD" in text(ask)
    )
    assert db.session.scalar(select(Contribution)) is None
    assert 'name="metadata_key" value="table"' in ask.get_data(as_text=True)  # carried to the run step
    done = post(client, auth, f"/contacts/{contact.id}/charge", {**form, "step": "run"}, page)
    assert done.status_code == 200 and "Charged 42.00 USD" in text(done), text(done)
    c = db.session.scalar(select(Contribution))
    assert (c.status, c.amount, c.contact_id, len(c.payments)) == ("Completed", 4200, contact.id, 1)


def test_charge_refusal_names_the_field(client, auth, processor):
    auth.login("op@example.org", "operator")
    contact = saved_customer(processor)
    resp = post(
        client,
        auth,
        f"/contacts/{contact.id}/charge",
        {"amount": "5", "currency": "usd", "application_fee": "1"},
        f"/contacts/{contact.id}",
    )
    assert resp.status_code == 422 and "Application fee: only with a destination account" in text(resp)


def test_saved_cards_listed_added_and_removed(client, auth, processor):
    auth.login("op@example.org", "operator")
    contact = saved_customer(processor)
    page = f"/contacts/{contact.id}"
    shown = client.get(page)
    assert "Content-Security-Policy" in shown.headers and "cards.js" in shown.get_data(as_text=True)
    listed = text(client.get(f"/contacts/{contact.id}/cards", headers=HTMX))
    assert "Visa ending <strong>4242</strong>, expires 12/2030" in listed
    assert "default" in listed and "Add a card to" in listed

    pm = card(processor, "5555555555554444")
    added = post(
        client,
        auth,
        f"/contacts/{contact.id}/cards/add",
        {"payment_method": pm, "make_default": "1", "customer_id": customer_of(contact)},
        page,
    )
    assert added.status_code == 200 and "ending 4444" in text(added) and "as the default card" in text(added)
    old = [c for c in cards.list_cards(processor, customer_of(contact))[0] if not c.default][0]
    removed = post(
        client,
        auth,
        f"/contacts/{contact.id}/cards/{old.id}/remove",
        {"customer_id": customer_of(contact)},
        page,
    )
    assert removed.status_code == 200 and f"Removed the card {old.id}" in text(removed)
    assert [c.id for c in cards.list_cards(processor, customer_of(contact))[0]] == [pm]


def test_gift_link_for_a_known_donor(client, auth, processor):
    auth.login("op@example.org", "operator")
    contact = saved_customer(processor)
    form = make_form(processor)
    page = f"/contacts/{contact.id}"
    assert "Make a donor link" in text(client.get(page))
    resp = post(client, auth, f"/contacts/{contact.id}/donor-links", {"form_id": str(form.id)}, page)
    body = resp.get_data(as_text=True)
    assert resp.status_code == 200 and "Copy link" in body and "mailto:" in body
    url = re.search(r'id="new-donor-link" readonly value="([^"]+)"', body).group(1)
    assert f"/donate/{form.slug}?donor=" in unescape(url)
    assert db.session.scalar(select(DonorLink)).contact_id == contact.id
    assert client.get(unescape(url).split("://", 1)[-1].split("/", 1)[-1].join(["/", ""])).status_code == 200


def test_viewer_sees_no_money_buttons(client, auth, processor):
    contact = saved_customer(processor)
    make_form(processor)
    auth.login("viewer@example.org", "viewer")
    body = text(client.get(f"/contacts/{contact.id}"))
    assert "Charge a saved card" not in body and "Make a donor link" not in body
    listed = text(client.get(f"/contacts/{contact.id}/cards", headers=HTMX))
    assert "<strong>4242</strong>" in listed and "Add a card" not in listed and "Remove" not in listed
    for url, data in (
        (f"/contacts/{contact.id}/charge", {"amount": "5", "step": "run"}),
        (f"/contacts/{contact.id}/cards/add", {"payment_method": "pm_x"}),
        (f"/contacts/{contact.id}/donor-links", {"form_id": "1"}),
    ):
        assert post(client, auth, url, data, f"/contacts/{contact.id}").status_code == 403
