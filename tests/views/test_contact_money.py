"""The contact page's money: charge a saved card (confirm, then charge exactly what the confirmation showed:
stored on the server, bound to a single-use token of the user who saw it), saved cards (listed after the page,
add / default / remove), and a gift link for a known donor; viewers see none of the buttons."""

from __future__ import annotations

import re
from html import unescape

from confirm_support import confirm
from donate_support import make_form
from payments_support import card, customer_of, saved_customer
from sqlalchemy import select

from admin.extensions import db
from admin.models import Contribution, DonorLink
from admin.services.payments import cards, charges

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
        "customer_id": customer_of(contact),
        "metadata_key": "table",
        "metadata_value": "7",
    }
    ask = post(client, auth, f"/contacts/{contact.id}/charge", form, page)
    assert (
        ask.status_code == 200 and "Charge 42.00 USD?" in text(ask) and "Yes, charge 42.00 USD" in text(ask)
    )
    assert db.session.scalar(select(Contribution)) is None
    assert 'name="metadata_key"' not in ask.get_data(as_text=True)  # kept on the server, not posted again
    token = auth.token(page)
    done = confirm(client, f"/contacts/{contact.id}/charge", ask, {"csrf_token": token}, headers=HTMX)
    assert done.status_code == 200 and "Charged 42.00 USD" in text(done), text(done)
    c = db.session.scalar(select(Contribution))
    assert (c.status, c.amount, c.contact_id, len(c.payments)) == ("Completed", 4200, contact.id, 1)
    assert c.description.startswith("Gala table ")


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


def _ask_charge(client, auth, contact, **extra):
    form = {"amount": "10", "currency": "usd", "customer_id": customer_of(contact), **extra}
    return post(client, auth, f"/contacts/{contact.id}/charge", form, f"/contacts/{contact.id}")


def test_charge_run_without_a_valid_token_charges_nothing(client, auth, processor, service_calls):
    charge_calls = service_calls(charges, "charge")
    auth.login("op@example.org", "operator")
    contact = saved_customer(processor)
    _ask_charge(client, auth, contact)  # a confirmation exists, but none of these carries its token
    for extra in ({}, {"token": "forged"}, {"token": ""}):
        resp = _ask_charge(client, auth, contact, step="run", **extra)
        assert resp.status_code == 400 and "Nothing was started" in text(resp)
    assert charge_calls == [] and db.session.scalar(select(Contribution)) is None


def test_a_tampered_charge_repost_charges_what_was_shown(client, auth, processor, service_calls):
    """The token with another amount, currency, capture, description and metadata posted alongside (and to
    another contact's address): exactly the stored charge runs."""
    charge_calls = service_calls(charges, "charge")
    auth.login("op@example.org", "operator")
    contact, other = saved_customer(processor), saved_customer(processor, name="Other Donor")
    ask = _ask_charge(
        client, auth, contact, description="Shown", capture="authorise", metadata_key="k", metadata_value="v"
    )
    assert "Charge 10.00 USD?" in text(ask)
    tampered = {
        "csrf_token": auth.token(f"/contacts/{contact.id}"),
        "amount": "999",
        "currency": "eur",
        "capture": "now",
        "description": "Changed",
        "metadata_key": "k",
        "metadata_value": "changed",
        "customer_id": customer_of(other),
    }
    done = confirm(client, f"/contacts/{other.id}/charge", ask, tampered, headers=HTMX)
    assert done.status_code == 200 and "Authorised 10.00 USD" in text(done), text(done)
    assert [
        (r.contact_id, r.amount, r.currency, r.capture, r.description, r.metadata, r.customer_id)
        for r in charge_calls
    ] == [(contact.id, 1000, "usd", False, "Shown", {"k": "v"}, customer_of(contact))]
    c = db.session.scalar(select(Contribution))
    assert (c.contact_id, c.amount, c.currency, c.status) == (contact.id, 1000, "usd", "Pending")


def test_a_charge_token_works_once_and_for_its_user_only(client, auth, processor, service_calls):
    charge_calls = service_calls(charges, "charge")
    contact = saved_customer(processor)
    auth.login("op@example.org", "operator")
    ask = _ask_charge(client, auth, contact)
    auth.logout()
    auth.login("admin@example.org", "admin")
    url, page = f"/contacts/{contact.id}/charge", f"/contacts/{contact.id}"
    theirs = confirm(client, url, ask, {"csrf_token": auth.token(page)}, headers=HTMX)
    assert theirs.status_code == 400 and "shown to someone else" in text(theirs)
    assert charge_calls == []
    auth.logout()
    auth.login("op@example.org", "operator")
    first = confirm(client, url, ask, {"csrf_token": auth.token(page)}, headers=HTMX)
    assert first.status_code == 200 and "Charged 10.00 USD" in text(first)
    again = confirm(client, url, ask, {"csrf_token": auth.token(page)}, headers=HTMX)
    assert again.status_code == 400 and "used already" in text(again)
    assert len(charge_calls) == 1 and len(db.session.scalars(select(Contribution)).all()) == 1
