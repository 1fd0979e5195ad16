"""A contact's saved cards against localstripe: list (brand, last four, expiry, default), add (and the first
one becomes the default), make another the default, remove; each audited with Stripe's request id."""

from __future__ import annotations

import pytest
from payments_support import card, customer_of, saved_customer
from sqlalchemy import select

from admin.errors import ServiceError
from admin.extensions import db
from admin.models import AuditLog
from admin.services.payments import cards


def test_add_default_remove(processor):
    contact = saved_customer(processor)
    cus = customer_of(contact)
    listed, rid = cards.list_cards(processor, cus)
    assert (
        len(listed) == 1 and listed[0].default and listed[0].last4 == "4242" and listed[0].expiry == "12/2030"
    )
    assert rid and rid.startswith("req_")

    second = card(processor, "5555555555554444")
    msg = cards.add_card(processor, contact, second, action_key="a1")
    assert "ending 4444" in msg and "default" not in msg
    cards.make_default(processor, contact, second)
    listed, _ = cards.list_cards(processor, cus)
    assert [c.id for c in listed][0] == second and [c.default for c in listed] == [True, False]

    first = listed[1].id
    cards.remove_card(processor, contact, first, action_key="r1")
    listed, _ = cards.list_cards(processor, cus)
    assert [c.id for c in listed] == [second]
    entries = list(
        db.session.scalars(select(AuditLog).where(AuditLog.action.like("card.%")).order_by(AuditLog.id))
    )
    assert [a.action for a in entries] == ["card.add", "card.default", "card.remove"]
    assert all(a.stripe_request_id and a.object_id == str(contact.id) for a in entries)


def test_first_card_becomes_default(processor):
    contact = saved_customer(processor, default=False)
    cus = customer_of(contact)
    for c in cards.list_cards(processor, cus)[0]:
        cards.remove_card(processor, contact, c.id)
    msg = cards.add_card(processor, contact, card(processor))
    assert "as the default card" in msg
    assert cards.list_cards(processor, cus)[0][0].default


def test_bad_ids_and_foreign_cards_refused(processor):
    contact = saved_customer(processor)
    other = saved_customer(processor, name="Someone Else")
    with pytest.raises(ServiceError) as err:
        cards.add_card(processor, contact, "tok_123")
    assert err.value.field == "payment_method"
    foreign = cards.list_cards(processor, customer_of(other))[0][0].id
    with pytest.raises(ServiceError, match="is not one of"):
        cards.remove_card(processor, contact, foreign)
