"""Stripe objects and events for tests, built from Stripe's own fixtures3.json.

Never hand-write minimal dicts: copy a real-shaped object, then change ids,
amounts and links.
"""

from __future__ import annotations

import copy
import itertools
import json
import time
from pathlib import Path
from typing import Any

from admin.stripe_gateway import sign_payload

_FIXTURES = json.loads((Path(__file__).parent / "fixtures" / "fixtures3.json").read_text())["resources"]
_seq = itertools.count(1)


def new_id(prefix: str) -> str:
    return f"{prefix}_T{next(_seq):06d}{int(time.time() * 1000) % 100000:05d}"


def obj(kind: str, **changes: Any) -> dict:
    """A deep copy of fixtures3's ``kind`` object with ``changes`` applied (top level)."""
    data = copy.deepcopy(_FIXTURES[kind])
    data.update(changes)
    return data


def customer(**changes: Any) -> dict:
    changes.setdefault("id", new_id("cus"))
    changes.setdefault("email", "donor@example.org")
    changes.setdefault("name", "Ada Donor")
    return obj("customer", **changes)


def charge(
    *,
    customer: str | None = None,
    payment_intent: str | None = None,
    amount: int = 2500,
    currency: str = "usd",
    captured: bool = True,
    status: str = "succeeded",
    **changes: Any,
) -> dict:
    ok = status == "succeeded"
    ch = obj(
        "charge",
        id=changes.pop("id", new_id("ch")),
        amount=amount,
        currency=currency,
        customer=customer,
        payment_intent=payment_intent,
        captured=captured and ok,
        amount_captured=amount if captured and ok else 0,
        paid=changes.pop("paid", ok),
        status=status,
        balance_transaction=changes.pop("balance_transaction", new_id("txn") if ok else None),
        created=int(time.time()),
        livemode=False,
        **changes,
    )
    ch["billing_details"]["email"] = ch["billing_details"].get("email") or "donor@example.org"
    ch["refunds"] = {
        "object": "list",
        "data": [],
        "has_more": False,
        "url": f"/v1/charges/{ch['id']}/refunds",
    }
    return ch


def balance_transaction(charge_obj: dict, fee: int = 103) -> dict:
    return obj(
        "balance_transaction",
        id=charge_obj["balance_transaction"],
        amount=charge_obj["amount"],
        currency=charge_obj["currency"],
        fee=fee,
        net=charge_obj["amount"] - fee,
        source=charge_obj["id"],
    )


def payment_intent(
    *,
    customer: str | None = None,
    amount: int = 2500,
    currency: str = "usd",
    status: str = "succeeded",
    **changes: Any,
) -> dict:
    return obj(
        "payment_intent",
        id=changes.pop("id", new_id("pi")),
        amount=amount,
        currency=currency,
        customer=customer,
        status=status,
        amount_received=amount if status == "succeeded" else 0,
        created=int(time.time()),
        livemode=False,
        last_payment_error=None,
        next_action=None,
        canceled_at=None,
        **changes,
    )


def subscription(
    *,
    customer: str,
    amount: int = 1000,
    currency: str = "usd",
    interval: str = "month",
    status: str = "active",
    **changes: Any,
) -> dict:
    sub = obj(
        "subscription",
        id=changes.pop("id", new_id("sub")),
        customer=customer,
        currency=currency,
        status=status,
        created=int(time.time()),
        start_date=int(time.time()),
        canceled_at=None,
        cancel_at=None,
        ended_at=None,
        livemode=False,
        **changes,
    )
    item = sub["items"]["data"][0]
    item["price"]["unit_amount"] = amount
    item["price"]["currency"] = currency
    item["price"]["recurring"]["interval"] = interval
    item["quantity"] = 1
    item["subscription"] = sub["id"]
    item["current_period_start"] = int(time.time())
    item["current_period_end"] = int(time.time()) + 30 * 86400
    if isinstance(item.get("plan"), dict):
        item["plan"]["amount"] = amount
        item["plan"]["interval"] = interval
    return sub


def invoice(
    *,
    customer: str,
    subscription: str | None,
    amount: int = 1000,
    currency: str = "usd",
    paid: bool = True,
    charge: str | None = None,
    payment_intent: str | None = None,
    shape: str = "current",
    **changes: Any,
) -> dict:
    """An invoice in the current (``parent``/InvoicePayment) or the older shape (``charge`` on the invoice)."""
    inv = obj(
        "invoice",
        id=changes.pop("id", new_id("in")),
        customer=customer,
        currency=currency,
        amount_due=amount,
        amount_paid=amount if paid else 0,
        amount_remaining=0 if paid else amount,
        total=amount,
        subtotal=amount,
        status="paid" if paid else "open",
        created=int(time.time()),
        billing_reason="subscription_cycle",
        livemode=False,
        customer_email="donor@example.org",
        customer_name="Ada Donor",
        **changes,
    )
    inv["status_transitions"] = {
        "finalized_at": int(time.time()),
        "paid_at": int(time.time()) if paid else None,
        "marked_uncollectible_at": None,
        "voided_at": None,
    }
    inv["parent"] = (
        {
            "type": "subscription_details",
            "quote_details": None,
            "subscription_details": {"metadata": {}, "subscription": subscription},
        }
        if subscription
        else None
    )
    inv.pop("subscription", None)
    if shape == "older":
        inv["subscription"] = subscription
        inv["charge"] = charge
        inv["payment_intent"] = payment_intent
    return inv


def invoice_payment(
    *,
    invoice_id: str,
    payment_intent: str | None = None,
    charge: str | None = None,
    amount: int = 1000,
    currency: str = "usd",
) -> dict:
    payment = (
        {"type": "payment_intent", "payment_intent": payment_intent}
        if payment_intent
        else {"type": "charge", "charge": charge}
    )
    return obj(
        "invoice_payment",
        id=new_id("inpay"),
        invoice=invoice_id,
        payment=payment,
        amount_paid=amount,
        amount_requested=amount,
        currency=currency,
        status="paid",
        livemode=False,
    )


def refund(
    *, charge: str, amount: int, currency: str = "usd", status: str = "succeeded", **changes: Any
) -> dict:
    return obj(
        "refund",
        id=changes.pop("id", new_id("re")),
        charge=charge,
        amount=amount,
        currency=currency,
        status=status,
        created=int(time.time()),
        **changes,
    )


def event(
    type_: str,
    data_object: dict,
    *,
    created: int | None = None,
    livemode: bool = False,
    event_id: str | None = None,
    api_version: str = "2026-10-28.endive",
) -> dict:
    ev = obj(
        "event",
        id=event_id or new_id("evt"),
        type=type_,
        created=created or int(time.time()),
        livemode=livemode,
        api_version=api_version,
    )
    ev["data"] = {"object": data_object}
    return ev


def signed(ev: dict | str, secret: str, timestamp: int | None = None) -> tuple[str, dict[str, str]]:
    """(body, headers) for posting ``ev`` as Stripe would."""
    body = ev if isinstance(ev, str) else json.dumps(ev)
    return body, {
        "Stripe-Signature": sign_payload(body, secret, timestamp),
        "Content-Type": "application/json",
    }
