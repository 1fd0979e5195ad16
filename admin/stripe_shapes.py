"""Reading Stripe objects in every API shape paydesk meets.

Webhook payloads follow the API version of the account or endpoint, so the
same fact sits in different places: an expandable field is an id or a whole
object; an invoice's subscription is top level (older versions, localstripe)
or under ``parent``; an invoice's charge is ``invoice.charge`` (older) or an
InvoicePayment (2025-03-31 "basil" onward). These helpers only read dicts;
fetching what a payload lacks is the worker's job (``webhooks.context``).
"""

from __future__ import annotations

import re
from typing import Any, overload

from admin.money import MAX_MINOR_UNITS  # what a Money column holds

# data.object["object"] -> the gateway resource that retrieves it.
RESOURCE_OF = {
    "charge": "charges",
    "invoice": "invoices",
    "payment_intent": "payment_intents",
    "subscription": "subscriptions",
    "customer": "customers",
    "refund": "refunds",
    "checkout.session": "checkout.sessions",
    "invoice_payment": "invoice_payments",
}

# What each kind of Stripe object's id starts with, and the longest id paydesk takes: Stripe documents ids as
# at most 255 characters. Checked before Stripe is asked, so a typo gets a message that says what an id looks
# like, not Stripe's "Bad request", and a pasted page of text is never echoed back.
ID_PREFIXES = {
    "customer": ("cus_",),
    "subscription": ("sub_",),
    "invoice": ("in_",),
    "charge": ("ch_", "py_"),
    "payment_intent": ("pi_",),
    "refund": ("re_", "pyr_"),
    "event": ("evt_",),
    "account": ("acct_",),
    "transfer": ("tr_",),
    "payout": ("po_",),
    "webhook_endpoint": ("we_",),
}
MAX_ID_LENGTH = 255
_ID_BODY = re.compile(r"[A-Za-z0-9_]+")


def stripe_id_problem(text: str, kind: str | None = None) -> str | None:
    """Why ``text`` cannot be the id of a Stripe ``kind`` (any Stripe object without one), in words for
    staff; None when it can be."""
    text = text.strip()
    if len(text) > MAX_ID_LENGTH:
        return f"at most {MAX_ID_LENGTH} characters, please (Stripe ids are shorter)"
    prefixes = ID_PREFIXES.get(kind or "", ())
    prefix = (
        next((p for p in prefixes if text.startswith(p)), None) if prefixes else text.partition("_")[0] + "_"
    )
    body = text[len(prefix) :] if prefix else ""
    if prefix and prefix != "_" and body and _ID_BODY.fullmatch(text):
        return None
    shown = repr(text[:40]) + ("…" if len(text) > 40 else "")
    if not prefixes:
        return f"{shown} is not a Stripe id: Stripe ids look like ch_3PqR2sT4uVwX5yZa (a prefix, _, letters and digits)"
    name = (kind or "").replace("_", " ")  # a kind: it has prefixes
    a = "an" if name[0] in "aeiou" else "a"
    example = f"{prefixes[0]}1PqR2sT4uVwX5yZa"
    starts = " or ".join(prefixes)
    return (
        f"{shown} is not {a} {name} id: {a} {name} id looks like {example} ({starts} then letters and digits)"
    )


class MalformedObject(ValueError):
    """A Stripe object paydesk will not record as it is: a field of the wrong type. The event ends in
    ``error`` with this message, so a listing never meets a string where money should be."""


@overload
def minor_units(obj: dict, field: str, default: int = 0) -> int: ...
@overload
def minor_units(obj: dict, field: str, default: int | None) -> int | None: ...
def minor_units(obj: dict, field: str, default: int | None = 0) -> int | None:
    """``obj[field]`` as an amount in minor units: an integer (not a bool, float or numeric string) that a
    Money column holds; ``default`` when absent or null; :class:`MalformedObject` otherwise."""
    value = obj.get(field)
    if value is None:
        return default
    if type(value) is not int or abs(value) > MAX_MINOR_UNITS:
        kind = obj.get("object") if isinstance(obj.get("object"), str) else "object"
        oid = obj.get("id") if isinstance(obj.get("id"), str) else "?"
        what = "out of range" if type(value) is int else f"a {type(value).__name__}"  # never the value itself
        raise MalformedObject(f"{kind} {oid}: {field} is not an integer amount in minor units ({what})")
    return value


def currency_of(obj: dict) -> str:
    """``obj["currency"]`` as a lower-case ISO code; :class:`MalformedObject` when it is not one."""
    value = obj.get("currency")
    if not isinstance(value, str) or not (value.isascii() and value.isalpha() and len(value) == 3):
        kind = obj.get("object") if isinstance(obj.get("object"), str) else "object"
        oid = obj.get("id") if isinstance(obj.get("id"), str) else "?"
        raise MalformedObject(f"{kind} {oid}: currency is not a three-letter code")
    return value.lower()


def sid(value: Any) -> str | None:
    """The id of an expandable field, whether Stripe sent the id or the expanded object (only ever a string)."""
    if isinstance(value, dict):
        value = value.get("id")
    if isinstance(value, str):
        return value or None
    return None


def subscription_of_invoice(inv: dict) -> str | None:
    """An invoice's subscription in every API shape (top level, ``parent``, or line items)."""
    sub = sid(inv.get("subscription"))
    if sub:
        return sub
    parent = inv.get("parent") or {}
    sub = sid((parent.get("subscription_details") or {}).get("subscription"))
    if sub:
        return sub
    for line in (inv.get("lines") or {}).get("data") or []:
        lp = line.get("parent") or {}
        sub = sid((lp.get("subscription_item_details") or {}).get("subscription")) or sid(
            line.get("subscription")
        )
        if sub:
            return sub
    return None


def object_ids(obj: dict) -> dict[str, str | None]:
    """The ids of the Stripe objects an event's data.object touches (stored on the event row)."""
    kind = obj.get("object")
    oid = sid(obj.get("id"))
    ids: dict[str, str | None] = {
        "object_id": oid,
        "customer_id": sid(obj.get("customer")),
        "subscription_id": None,
        "invoice_id": sid(obj.get("invoice")),
        "charge_id": sid(obj.get("charge")) if kind != "charge" else oid,
        "payment_intent_id": sid(obj.get("payment_intent")),
    }
    if kind == "invoice":
        ids["invoice_id"] = oid
        ids["subscription_id"] = subscription_of_invoice(obj)
    elif kind == "payment_intent":
        ids["payment_intent_id"] = oid
        ids["charge_id"] = sid(obj.get("latest_charge"))
    elif kind == "subscription":
        ids["subscription_id"] = oid
    elif kind == "customer":
        ids["customer_id"] = oid
        ids["object_id"] = None  # the customer key already covers it
    elif kind == "checkout.session":
        ids["subscription_id"] = sid(obj.get("subscription"))
    elif kind == "invoice_payment":
        payment = obj.get("payment") or {}
        ids["payment_intent_id"] = sid(payment.get("payment_intent"))
        ids["charge_id"] = sid(payment.get("charge"))
    return ids


def invoice_payment_refs(inv: dict) -> tuple[str | None, str | None]:
    """(charge id, payment intent id) named by the invoice itself, in the older shape only."""
    return sid(inv.get("charge")), sid(inv.get("payment_intent"))


def paid_invoice_payment(payments: list[dict]) -> tuple[str | None, str | None]:
    """(charge id, payment intent id) of the paid InvoicePayment in a list (current shape)."""
    ordered = sorted(payments, key=lambda p: (p.get("status") != "paid", not p.get("is_default")))
    for p in ordered:
        pay = p.get("payment") or {}
        if pay.get("charge") or pay.get("payment_intent"):
            return sid(pay.get("charge")), sid(pay.get("payment_intent"))
    return None, None


def subscription_terms(sub: dict) -> dict[str, Any]:
    """Amount (minor units), currency, interval and period end of a subscription, from its items.

    Prices (current API) win over plans (older API, localstripe); the period end
    moved from the subscription to its items in 2025.
    """
    amount = 0
    currency = sub.get("currency")
    interval, interval_count = "month", 1
    period_end = sub.get("current_period_end")
    for item in (sub.get("items") or {}).get("data") or []:
        qty = item.get("quantity") or 1
        price = item.get("price") if isinstance(item.get("price"), dict) else None
        plan = item.get("plan") if isinstance(item.get("plan"), dict) else None
        src = price if price and price.get("unit_amount") is not None else plan
        if not src:
            continue
        unit = minor_units(src, "unit_amount" if src is price else "amount") or 0
        amount += unit * (qty if type(qty) is int else 1)
        currency = currency or src.get("currency")
        rec = (price or {}).get("recurring") or {}
        interval = rec.get("interval") or (plan or {}).get("interval") or interval
        interval_count = int(
            rec.get("interval_count") or (plan or {}).get("interval_count") or interval_count
        )
        period_end = period_end or item.get("current_period_end")
    if not amount and isinstance(sub.get("plan"), dict):
        qty = sub.get("quantity") or 1
        amount = (minor_units(sub["plan"], "amount") or 0) * (qty if type(qty) is int else 1)
        currency = currency or sub["plan"].get("currency")
        interval = sub["plan"].get("interval") or interval
    return {
        "amount": amount,
        "currency": (currency or "usd").lower(),
        "interval": interval,
        "interval_count": interval_count,
        "period_end": period_end,
    }


def failure_message(obj: dict) -> str | None:
    """Why a charge, payment intent or invoice failed, as Stripe worded it."""
    if obj.get("failure_message"):
        code = obj.get("failure_code")
        return f"{obj['failure_message']}" + (f" ({code})" if code else "")
    err = obj.get("last_payment_error") or obj.get("last_finalization_error") or {}
    if err.get("message"):
        code = err.get("decline_code") or err.get("code")
        return f"{err['message']}" + (f" ({code})" if code else "")
    return None
