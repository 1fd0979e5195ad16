"""A contact's saved cards (the seed's add and remove credit card): listed from Stripe (brand, last four,
expiry, which is the default), added from Stripe Elements on the contact page (the browser makes the
PaymentMethod with the publishable key; paydesk attaches it to the contact's customer), removed (detached),
made the default (``invoice_settings.default_payment_method``, what a staff charge uses).

Each change goes through the gateway with an idempotency key of the staff action and writes one audit entry
(``card.add``, ``card.remove``, ``card.default``, object ``contact``) with the Stripe request id.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from admin.dbutil import immediate
from admin.errors import ServiceError, stripe_failure
from admin.extensions import db
from admin.models import Contact, PaymentProcessor, StripeCustomer
from admin.services.core import audit
from admin.services.core.idempotency import idempotency_key
from admin.stripe_gateway import Gateway, GatewayError
from admin.stripe_shapes import sid

_PM = re.compile(r"pm_[A-Za-z0-9_]{1,250}")


@dataclass
class SavedCard:
    id: str
    brand: str
    last4: str
    exp_month: int | None
    exp_year: int | None
    default: bool

    @property
    def expiry(self) -> str:
        return f"{self.exp_month:02d}/{self.exp_year}" if self.exp_month and self.exp_year else ""

    def as_dict(self) -> dict:
        return {
            "id": self.id,
            "brand": self.brand,
            "last4": self.last4,
            "exp_month": self.exp_month,
            "exp_year": self.exp_year,
            "expiry": self.expiry,
            "default": self.default,
        }


def link_of(contact: Contact, processor: PaymentProcessor, customer_id: str | None = None) -> StripeCustomer:
    """The contact's customer on this processor whose cards staff handle."""
    from admin.services.payments.charges import customer_links

    links = customer_links(contact, processor.id)
    if customer_id:
        links = [s for s in links if s.customer_id == customer_id]
    if not links:
        raise ServiceError(
            f"Stripe customer: this contact has no Stripe customer on {processor.name}"
            + (f" named {customer_id}" if customer_id else "")
            + "; create one first",
            field="customer_id",
        )
    if len(links) > 1:
        raise ServiceError("Stripe customer: this contact has several; say which", field="customer_id")
    return links[0]


def check_card_id(pm: str | None) -> str:
    pm = (pm or "").strip()
    if not _PM.fullmatch(pm):
        raise ServiceError("Card: a saved card's id (pm_...)", field="payment_method")
    return pm


def list_cards(processor: PaymentProcessor, customer_id: str) -> tuple[list[SavedCard], str | None]:
    """The customer's cards as Stripe has them now, the default first; and the request id."""
    gw = Gateway.for_processor(processor)
    try:
        cus = gw.retrieve("customers", customer_id)
        listed = gw.list("payment_methods", customer=customer_id, type="card", limit=100)
    except GatewayError as err:
        raise stripe_failure(
            err, with_request=True, doing=f"refused to list the cards of {customer_id}"
        ) from None
    default = sid((cus.get("invoice_settings") or {}).get("default_payment_method"))
    cards = []
    for pm in listed.get("data") or []:
        c = pm.get("card") or {}
        cards.append(
            SavedCard(
                pm["id"],
                (c.get("brand") or "card").title(),
                c.get("last4") or "????",
                c.get("exp_month"),
                c.get("exp_year"),
                pm["id"] == default,
            )
        )
    cards.sort(key=lambda x: not x.default)
    return cards, listed.request_id


def _audit(
    action: str,
    contact_id: int,
    processor: PaymentProcessor,
    parameters: dict,
    message: str,
    request_id: str | None,
    ok: bool = True,
) -> None:
    immediate()
    audit.record(
        action,
        object_type="contact",
        object_id=str(contact_id),
        processor_id=processor.id,
        parameters=parameters,
        ok=ok,
        message=message,
        stripe_request_id=request_id,
        commit=False,
    )
    db.session.commit()


def _call(processor: PaymentProcessor, contact_id: int, action: str, parameters: dict, what: str, fn):
    try:
        return fn()
    except GatewayError as err:
        refusal = stripe_failure(err, with_request=True, doing=f"refused to {what}")
        _audit(action, contact_id, processor, parameters, refusal.message, err.request_id, ok=False)
        raise refusal from None


def add_card(
    processor: PaymentProcessor,
    contact: Contact,
    payment_method: str,
    *,
    make_default: bool = False,
    customer_id: str | None = None,
    action_key: str | None = None,
) -> str:
    """Attach a card made by Stripe Elements to the contact's customer (and make it the default when asked, or
    when the customer has none). Returns the message staff see."""
    pm = check_card_id(payment_method)
    link = link_of(contact, processor, customer_id)
    cus_id, contact_id = link.customer_id, contact.id
    gw = Gateway.for_processor(processor)
    key = idempotency_key("card-add", pm, action_key)
    params = {"card": pm, "customer": cus_id, "idempotency_key": key}
    res = _call(
        processor,
        contact_id,
        "card.add",
        params,
        f"add the card to {cus_id}",
        lambda: gw.call("payment_methods", "attach", pm, params={"customer": cus_id}, idempotency_key=key),
    )
    card = res.get("card") or {}
    shown = f"{(card.get('brand') or 'card').title()} ending {card.get('last4') or '????'}"
    if not make_default:
        cus = _call(
            processor,
            contact_id,
            "card.add",
            params,
            f"read {cus_id}",
            lambda: gw.retrieve("customers", cus_id),
        )
        make_default = not sid((cus.get("invoice_settings") or {}).get("default_payment_method"))
    if make_default:
        _call(
            processor,
            contact_id,
            "card.add",
            params,
            f"make {pm} the default",
            lambda: gw.update("customers", cus_id, {"invoice_settings": {"default_payment_method": pm}}),
        )
    message = f"Added {shown} to {cus_id}" + (", as the default card." if make_default else ".")
    _audit("card.add", contact_id, processor, {**params, "default": make_default}, message, res.request_id)
    return message


def remove_card(
    processor: PaymentProcessor,
    contact: Contact,
    payment_method: str,
    *,
    customer_id: str | None = None,
    action_key: str | None = None,
) -> str:
    pm = check_card_id(payment_method)
    link = link_of(contact, processor, customer_id)
    cus_id, contact_id = link.customer_id, contact.id
    gw = Gateway.for_processor(processor)
    current = _call(
        processor,
        contact_id,
        "card.remove",
        {"card": pm},
        f"read {pm}",
        lambda: gw.retrieve("payment_methods", pm),
    )
    if sid(current.get("customer")) != cus_id:
        raise ServiceError(f"Card: {pm} is not one of {cus_id}'s cards", field="payment_method")
    key = idempotency_key("card-remove", pm, action_key)
    params = {"card": pm, "customer": cus_id, "idempotency_key": key}
    res = _call(
        processor,
        contact_id,
        "card.remove",
        params,
        f"remove {pm}",
        lambda: gw.call("payment_methods", "detach", pm, idempotency_key=key),
    )
    message = f"Removed the card {pm} from {cus_id}."
    _audit("card.remove", contact_id, processor, params, message, res.request_id)
    return message


def make_default(
    processor: PaymentProcessor, contact: Contact, payment_method: str, *, customer_id: str | None = None
) -> str:
    pm = check_card_id(payment_method)
    link = link_of(contact, processor, customer_id)
    cus_id, contact_id = link.customer_id, contact.id
    gw = Gateway.for_processor(processor)
    params = {"card": pm, "customer": cus_id}
    res = _call(
        processor,
        contact_id,
        "card.default",
        params,
        f"make {pm} the default",
        lambda: gw.update("customers", cus_id, {"invoice_settings": {"default_payment_method": pm}}),
    )
    message = f"{pm} is now {cus_id}'s default card (what a staff charge uses)."
    _audit("card.default", contact_id, processor, params, message, res.request_id)
    return message
