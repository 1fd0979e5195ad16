"""PaymentIntents in every state, made through real calls to localstripe (as a donor and the form would),
then tracked by paydesk the way it learns of intents from Stripe's list."""

from __future__ import annotations

from datetime import timedelta

from admin.extensions import db
from admin.services.intents.ops import learn_intent
from admin.services.settings.processors import gateway
from admin.timeutil import utcnow

CARD_OK = "4242424242424242"
CARD_3DS = "4000002500003155"


def _card(gw, number: str) -> str:
    return gw.create(
        "payment_methods",
        {"type": "card", "card": {"number": number, "exp_month": 12, "exp_year": 2030, "cvc": "123"}},
    )["id"]


def abandoned(processor, amount: int = 2000, currency: str = "usd", **extra) -> dict:
    """A donor who opened the form and left: requires_payment_method."""
    return dict(
        gateway(processor).create(
            "payment_intents",
            {"amount": amount, "currency": currency, "payment_method_types": ["card"], **extra},
        )
    )


def uncaptured(processor, amount: int = 3000, currency: str = "usd") -> dict:
    """An authorisation held on the card, waiting for staff to capture it: requires_capture."""
    gw = gateway(processor)
    return dict(
        gw.create(
            "payment_intents",
            {
                "amount": amount,
                "currency": currency,
                "payment_method": _card(gw, CARD_OK),
                "payment_method_types": ["card"],
                "capture_method": "manual",
                "confirm": True,
            },
        )
    )


def waiting_for_3ds(processor, amount: int = 3000) -> dict:
    gw = gateway(processor)
    return dict(
        gw.create(
            "payment_intents",
            {
                "amount": amount,
                "currency": "usd",
                "payment_method": _card(gw, CARD_3DS),
                "payment_method_types": ["card"],
                "confirm": True,
            },
        )
    )


def succeeded(processor, amount: int = 2500) -> dict:
    gw = gateway(processor)
    return dict(
        gw.create(
            "payment_intents",
            {
                "amount": amount,
                "currency": "usd",
                "payment_method": _card(gw, CARD_OK),
                "payment_method_types": ["card"],
                "confirm": True,
            },
        )
    )


def track(processor, pi: dict, *, age: timedelta | None = None, **local):
    """paydesk tracks the intent; ``age`` back-dates paydesk's record (what the jobs go by)."""
    from admin.services.intents.queries import by_intent_id

    learn_intent(processor, pi)
    row = by_intent_id(pi["id"])
    if age is not None:
        row.created_date = utcnow() - age
    for k, v in local.items():
        setattr(row, k, v)
    db.session.commit()
    return row


def stripe_status(processor, intent_id: str) -> dict:
    return dict(gateway(processor).retrieve("payment_intents", intent_id))
