"""Demo data made through real Stripe flows (against localstripe in ``make demo`` and tests).

Nothing here writes paydesk records: it only does to Stripe what donors and
staff would do (customers, a monthly subscription paid by card, one-off
payments, a refund, an abandoned intent, a 3-D Secure intent waiting for the
donor, a declined card). Stripe then sends its webhooks and paydesk's worker
turns them into contacts, contributions and payments, as in production.

One gap: localstripe emits no ``charge.*`` events, so the refund would never
reach paydesk. :func:`charge_refunded_event` builds the ``charge.refunded``
event Stripe would send, around the real (re-fetched) charge; the summary lists
it under ``events_to_deliver`` and the caller delivers it (``make demo`` posts
it, signed, to the webhook endpoint; the test stores it).
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable
from typing import Any

from admin.stripe_gateway import Gateway, GatewayError
from admin.stripe_shapes import sid

CARD_OK = "4242424242424242"
CARD_3DS = "4000002500003155"  # requires_action until the donor authenticates
CARD_DECLINED_ON_CHARGE = "4000000000000341"  # attaches, then "Your card was declined."

DONORS = [
    ("Ada Lovelace", "ada.lovelace@example.org"),
    ("Grace Hopper", "grace.hopper@example.org"),
    ("Alan Turing", "alan.turing@example.org"),
    ("Katherine Johnson", "katherine.johnson@example.org"),
    ("Mary Somerville", "mary.somerville@example.org"),
    ("Edsger Dijkstra", "edsger.dijkstra@example.org"),
]

MONTHLY_AMOUNT = 1500  # minor units
CURRENCY = "usd"


def _card(number: str) -> dict[str, Any]:
    return {"number": number, "exp_month": 12, "exp_year": 2030, "cvc": "123"}


def _charge_id(intent: dict) -> str | None:
    """The charge of a PaymentIntent in any shape: ``latest_charge`` (id or expanded) or ``charges``."""
    latest = sid(intent.get("latest_charge"))
    if latest:
        return latest
    charges = (intent.get("charges") or {}).get("data") or []
    return charges[0]["id"] if charges else None


def _card_for(gw: Gateway, customer_id: str, number: str, *, default: bool = False) -> str:
    pm = gw.create(
        "payment_methods",
        {"type": "card", "card": _card(number), "billing_details": {"address": {"postal_code": "10115"}}},
    )
    gw.call("payment_methods", "attach", pm["id"], params={"customer": customer_id})
    if default:
        gw.update("customers", customer_id, {"invoice_settings": {"default_payment_method": pm["id"]}})
    return pm["id"]


def donation_plan(gw: Gateway, amount: int, *, interval: str = "month", currency: str = CURRENCY) -> str:
    """A product and a plan for a recurring donation (localstripe has plans, not prices); the plan id."""
    product = gw.create("products", {"name": f"Donation every {interval}", "type": "service"})
    plan = gw.create(
        "plans",
        {
            "amount": amount,
            "currency": currency,
            "interval": interval,
            "product": product["id"],
            "nickname": f"Donation {amount} {currency} per {interval}",
        },
    )
    return plan["id"]


def subscribe(gw: Gateway, customer_id: str, plan_id: str, *, card: str = CARD_OK) -> dict:
    """A subscription paid by card, as a donor signing up makes it: Stripe invoices and charges it."""
    _card_for(gw, customer_id, card, default=True)
    return gw.create(
        "subscriptions",
        {"customer": customer_id, "items": [{"plan": plan_id}], "metadata": {"source": "paydesk demo"}},
    )


def _one_off(
    gw: Gateway, customer_id: str, payment_method: str, amount: int, description: str, confirm: bool = True
) -> dict:
    # The payment method goes in at creation: localstripe answers 500 to confirm(payment_method=...).
    return gw.create(
        "payment_intents",
        {
            "amount": amount,
            "currency": CURRENCY,
            "customer": customer_id,
            "payment_method": payment_method,
            "payment_method_types": ["card"],
            "confirm": confirm,
            # localstripe refuses ``description`` on PaymentIntents; metadata carries it instead.
            "metadata": {"source": "paydesk demo", "description": description},
        },
    )


# Donors from before paydesk was connected: Stripe has them, paydesk learns of them by importing.
EARLIER_DONORS = [
    ("Emmy Noether", "emmy.noether@example.org", 2500, "eur", "month"),
    ("Srinivasa Ramanujan", "ramanujan@example.org", 1000, "usd", "month"),
    ("Hedy Lamarr", "hedy.lamarr@example.org", 12000, "usd", "year"),
    ("Rosalind Franklin", "rosalind.franklin@example.org", 500, "usd", "month"),
    ("Chien-Shiung Wu", "cs.wu@example.org", 5000, "usd", "year"),
    ("Marie Curie", "marie.curie@example.org", 2000, "eur", "month"),
]


def create_history(gw: Gateway, log: Callable[[str], None] | None = None) -> dict[str, Any]:
    """What a Stripe account holds before paydesk is connected to it (no webhook reaches paydesk
    for any of it): earlier donors with subscriptions (monthly and yearly, USD and EUR, one
    since cancelled) and one-off gifts. ``make demo`` then imports it, as staff would."""
    say = log or (lambda _msg: None)
    plans: dict[tuple, str] = {}
    out: dict[str, Any] = {"customers": [], "subscriptions": [], "cancelled": [], "charges": []}
    for name, email, amount, currency, interval in EARLIER_DONORS:
        cus = gw.create(
            "customers",
            {
                "name": name,
                "email": email,
                "description": "earlier donor",
                "metadata": {"source": "before paydesk"},
            },
        )
        out["customers"].append(cus["id"])
        key = (amount, currency, interval)
        if key not in plans:
            plans[key] = donation_plan(gw, amount, interval=interval, currency=currency)
        out["subscriptions"].append(subscribe(gw, cus["id"], plans[key])["id"])
    cancelled = out["subscriptions"][3]
    gw.call("subscriptions", "cancel", cancelled)
    out["cancelled"].append(cancelled)
    for cus, amount in ((out["customers"][1], 7500), (out["customers"][4], 3000)):
        pm = _card_for(gw, cus, CARD_OK)
        out["charges"].append(_charge_id(_one_off(gw, cus, pm, amount, "Gift before paydesk")))
    # and one who never gave: a customer only (imported as a contact with no contributions)
    out["customers"].append(
        gw.create("customers", {"name": "Ada Byron King", "email": "ada.king@example.org"})["id"]
    )
    say(
        f"{len(out['customers'])} earlier customers, {len(out['subscriptions'])} subscriptions "
        f"(1 since cancelled), {len(out['charges'])} one-off gifts, all before paydesk was connected"
    )
    return out


def charge_refunded_event(gw: Gateway, charge_id: str) -> dict[str, Any]:
    """The ``charge.refunded`` event Stripe sends after a refund (localstripe sends none)."""
    charge = dict(gw.retrieve("charges", charge_id))
    return {
        "id": f"evt_demo_{secrets.token_hex(10)}",
        "object": "event",
        "type": "charge.refunded",
        "api_version": None,
        "created": int(time.time()),
        "livemode": bool(charge.get("livemode")),
        "pending_webhooks": 1,
        "request": {"id": None, "idempotency_key": None},
        "data": {"object": charge, "previous_attributes": {"amount_refunded": 0, "refunded": False}},
    }


def create_demo_data(gw: Gateway, log: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Create the demo's Stripe objects; returns a summary of the ids made, by kind."""
    say = log or (lambda _msg: None)
    summary: dict[str, Any] = {"customers": [], "succeeded": [], "refunds": []}

    customers = []
    for name, email in DONORS:
        cus = gw.create(
            "customers",
            {
                "name": name,
                "email": email,
                "description": "paydesk demo donor",
                "metadata": {"source": "paydesk demo"},
            },
        )
        customers.append(cus["id"])
    summary["customers"] = customers
    say(f"{len(customers)} customers")

    # A monthly donation: product + plan (localstripe has plans, not prices) + subscription.
    product = gw.create("products", {"name": "Monthly donation", "type": "service"})
    plan = gw.create(
        "plans",
        {
            "amount": MONTHLY_AMOUNT,
            "currency": CURRENCY,
            "interval": "month",
            "product": product["id"],
            "nickname": "Monthly donation $15",
        },
    )
    ada = customers[0]
    _card_for(gw, ada, CARD_OK, default=True)
    sub = gw.create(
        "subscriptions",
        {"customer": ada, "items": [{"plan": plan["id"]}], "metadata": {"source": "paydesk demo"}},
    )
    summary.update(
        product=product["id"], plan=plan["id"], subscription=sub["id"], subscription_status=sub.get("status")
    )
    say(f"subscription {sub['id']} ({sub.get('status')}) for {DONORS[0][0]}")

    # One-off donations that succeed.
    for cus, amount in ((customers[1], 2500), (customers[2], 5000), (customers[3], 1000)):
        pm = _card_for(gw, cus, CARD_OK)
        pi = _one_off(gw, cus, pm, amount, "One-off donation")
        summary["succeeded"].append(pi["id"])
        if pi.get("status") != "succeeded":
            raise RuntimeError(f"demo payment {pi['id']} ended {pi.get('status')}, expected succeeded")
    say(f"{len(summary['succeeded'])} one-off payments succeeded")

    # Staff refund the second one in full.
    refunded_pi = gw.retrieve("payment_intents", summary["succeeded"][1])
    refunded_charge = _charge_id(refunded_pi)
    if refunded_charge is None:  # never: it succeeded
        raise RuntimeError(f"the demo's payment {refunded_pi['id']} succeeded without a charge")
    refund = gw.create("refunds", {"charge": refunded_charge, "metadata": {"source": "paydesk demo"}})
    summary["refunds"].append(refund["id"])
    summary["refunded_intent"] = refunded_pi["id"]
    summary["events_to_deliver"] = [charge_refunded_event(gw, refunded_charge)]
    say(f"refund {refund['id']} of {refunded_pi['id']}")

    # A donor who gave up before entering a card.
    abandoned = gw.create(
        "payment_intents",
        {
            "amount": 2000,
            "currency": CURRENCY,
            "customer": customers[4],
            "payment_method_types": ["card"],
            "metadata": {"source": "paydesk demo", "description": "Abandoned"},
        },
    )
    summary["abandoned"] = abandoned["id"]

    # A donor stopped at 3-D Secure.
    pm3 = _card_for(gw, customers[4], CARD_3DS)
    pending = _one_off(gw, customers[4], pm3, 3000, "Donation waiting for 3-D Secure")
    summary["requires_action"] = pending["id"]
    summary["requires_action_status"] = pending.get("status")

    # A card declined at charge time: the intent goes back to requires_payment_method.
    pmd = _card_for(gw, customers[5], CARD_DECLINED_ON_CHARGE)
    declined = _one_off(gw, customers[5], pmd, 4000, "Declined donation", confirm=False)
    try:
        gw.call("payment_intents", "confirm", declined["id"])
        summary["declined_error"] = None
    except GatewayError as err:
        summary["declined_error"] = err.code or err.message
    summary["declined"] = declined["id"]
    say(
        f"abandoned {abandoned['id']}, 3-D Secure pending {pending['id']} ({pending.get('status')}), "
        f"declined {declined['id']} ({summary['declined_error']})"
    )
    return summary
