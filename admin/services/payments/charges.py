"""Charging a saved customer from the contact's page or ``payments charge`` (the seed's create_payment).

One PaymentIntent on the contact's Stripe customer and saved card, confirmed off-session: captured at once,
or only authorised (``capture=False``; staff may give an expiry after which ``jobs process-stripe
--cancel-incomplete`` releases it). The contribution is written as the webhook would write it:

1. a Pending contribution (source ``staff``) is committed first, with paydesk's unique invoice id;
2. the PaymentIntent is created (idempotency key of this staff action) with the description the FAQ asks
   for (``<description> <contactID>-<contributionID> <invoice id>``), the statement descriptor suffix,
   Connect's application fee / destination / transfer group, and the metadata rows;
3. its id is recorded on the contribution before it is confirmed, so its webhooks find this contribution;
4. once confirmed, a captured payment is recorded at once (``charges.record_charge``, as the
   ``charge.succeeded`` handler does): the later webhook finds the same contribution and payment and adds
   nothing. An authorisation stays Pending until it is captured; a decline marks the contribution Failed.
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from sqlalchemy import select

from admin.dbutil import immediate, lock_objects, parse_id, parse_whole
from admin.errors import ServiceError, StripeFailure, check_text, stripe_failure
from admin.extensions import db
from admin.models import (
    COMPLETED,
    PENDING,
    Contact,
    Contribution,
    Payment,
    PaymentProcessor,
    StripeCustomer,
    StripePaymentIntent,
)
from admin.services.core import audit
from admin.services.core.idempotency import idempotency_key, new_action_key
from admin.services.core.stripe_reader import StripeReader, write_after_reading
from admin.services.intents import queries as intents
from admin.services.payments import common
from admin.services.records import charges as charge_records
from admin.services.records import contributions, customers
from admin.stripe_gateway import Gateway, GatewayError
from admin.stripe_shapes import sid
from admin.timeutil import utcnow

SOURCE = intents.STAFF_SOURCE
SUFFIX_MAX = 22
_SUFFIX_FORBIDDEN = set("<>\\'\"*")
DESCRIPTION_MAX = 400  # leaves room for the ids the FAQ adds (Stripe takes 1000; contributions keep 500)
EXPIRY_MAX_HOURS = 7 * 24 - 1  # Stripe releases an authorisation after 7 days anyway
RESERVED_METADATA = ("contact_id", "contribution_id", "invoice_id", "source")
LABELS = {
    "amount": "Amount",
    "currency": "Currency",
    "description": "Description",
    "statement_descriptor_suffix": "Statement descriptor suffix",
    "capture": "Capture",
    "expires_after": "Cancel the authorisation after (hours)",
    "application_fee": "Application fee",
    "destination": "Destination account",
    "transfer_group": "Transfer group",
    "metadata": "Metadata",
    "customer_id": "Stripe customer",
    "payment_method": "Card",
}


@dataclass
class ChargeRequest:
    """What staff ask for: one parameter class for the contact page's form, the CLI and the API."""

    contact_id: int | None  # None: the contact linked to ``customer_id`` (the API may name only the customer)
    amount: str | int | None
    currency: str = "usd"
    description: str = ""
    statement_descriptor_suffix: str | None = None
    capture: bool = True
    expires_after: int | None = None  # hours; only for an authorisation
    application_fee: str | int | None = None
    destination: str | None = None
    transfer_group: str | None = None
    metadata: dict[str, str] = field(default_factory=dict)
    customer_id: str | None = None  # which of the contact's customers; default: its only one
    payment_method: str | None = None  # which saved card; default: the customer's default
    action_key: str | None = None

    @classmethod
    def from_form(cls, form: Mapping, contact_id: int | str | None = None) -> ChargeRequest:
        cid = parse_id(str(contact_id if contact_id is not None else form.get("contact_id") or ""))
        if cid is None:
            raise ServiceError("Contact: the contact's number (# on its page)", field="contact_id")
        capture = (form.get("capture") or "now").strip().lower()
        if capture not in ("now", "authorise", "authorize", "1", "0", "true", "false", "yes", "no"):
            raise ServiceError("Capture: now, or authorise (authorise only, capture later)", field="capture")
        hours_text = str(form.get("expires_after") or "").strip()
        hours = parse_whole(hours_text, 1, EXPIRY_MAX_HOURS) if hours_text else None
        if hours_text and hours is None:
            raise ServiceError(
                f"Cancel the authorisation after (hours): whole hours from 1 to {EXPIRY_MAX_HOURS} (Stripe releases an "
                f"authorisation after 7 days anyway), or empty",
                field="expires_after",
            )
        return cls(
            contact_id=cid,
            amount=form.get("amount"),
            currency=form.get("currency") or "usd",
            description=form.get("description") or "",
            statement_descriptor_suffix=form.get("statement_descriptor_suffix") or None,
            capture=capture in ("now", "1", "true", "yes"),
            expires_after=hours,
            application_fee=form.get("application_fee") or None,
            destination=(form.get("destination") or "").strip() or None,
            transfer_group=form.get("transfer_group") or None,
            metadata=common.form_metadata(form),
            customer_id=(form.get("customer_id") or "").strip() or None,
            payment_method=(form.get("payment_method") or "").strip() or None,
            action_key=form.get("action_key") or None,
        )


@dataclass
class ChargePlan:
    """A charge checked before Stripe is asked: what the confirmation shows."""

    contact: Contact
    link: StripeCustomer
    amount: int
    currency: str
    description: str
    suffix: str | None
    fee: int | None
    request: ChargeRequest

    def describe(self) -> str:
        who = self.contact.display_name or self.contact.email or f"contact #{self.contact.id}"
        how = (
            "and capture it now"
            if self.request.capture
            else (
                "as an authorisation only (capture it later"
                + (
                    f"; cancelled after {self.request.expires_after} h if not captured)"
                    if self.request.expires_after
                    else "; Stripe releases it after 7 days)"
                )
            )
        )
        return (
            f"Charge {common.shown(self.amount, self.currency)} to {who}'s saved card ({self.link.customer_id}) "
            f"{how}"
            + (f", application fee {common.shown(self.fee, self.currency)}" if self.fee else "")
            + (f", to {self.request.destination}" if self.request.destination else "")
            + "."
        )

    def checked(self) -> dict[str, Any]:
        """Exactly what will run, as ``ChargeRequest`` fields (amounts in minor units, the customer resolved,
        the staff action's key): what a confirmation stores and its button runs, never values posted again."""
        r = self.request
        return {
            "contact_id": self.contact.id,
            "amount": self.amount,
            "currency": self.currency,
            "description": self.description,
            "statement_descriptor_suffix": self.suffix,
            "capture": r.capture,
            "expires_after": r.expires_after,
            "application_fee": self.fee,
            "destination": r.destination,
            "transfer_group": r.transfer_group,
            "metadata": dict(r.metadata),
            "customer_id": self.link.customer_id,
            "payment_method": r.payment_method,
            "action_key": r.action_key or new_action_key(),
        }


@dataclass
class ChargeOutcome:
    contribution: Contribution
    intent_id: str
    status: str  # succeeded, requires_capture, failed
    message: str
    request_id: str | None = None
    failure: StripeFailure | None = None  # Stripe's refusal, when it refused (kind: card, transient, ...)

    @property
    def ok(self) -> bool:
        return self.status != "failed"


def customer_links(contact: Contact, processor_id: int | None = None) -> list[StripeCustomer]:
    """The contact's Stripe customers staff may charge: not deleted, not an unverified match by email."""
    return [
        s
        for s in contact.stripe_customers
        if not s.deleted and not s.unverified and (processor_id is None or s.processor_id == processor_id)
    ]


def _suffix(text: str | None) -> str | None:
    text = check_text(text, "Statement descriptor suffix", "statement_descriptor_suffix")
    if not text:
        return None
    if len(text) > SUFFIX_MAX or set(text) & _SUFFIX_FORBIDDEN or not re.search(r"[A-Za-z]", text):
        raise ServiceError(
            f"Statement descriptor suffix: at most {SUFFIX_MAX} characters with at least one letter "
            "and none of < > \\ ' \" *",
            field="statement_descriptor_suffix",
        )
    return text


def contact_of_customer(processor: PaymentProcessor, customer_id: str | None) -> int:
    """The contact paydesk links to ``customer_id`` on this processor: who a charge naming only the customer is
    for. A ``ServiceError`` when none is given or none is linked."""
    if not customer_id:
        raise ServiceError("Contact: give the contact or its Stripe customer", field="contact_id")
    link = customers.find_link(processor.id, customer_id)
    if link is None or link.contact_id is None:
        raise ServiceError(
            f"Stripe customer: paydesk has no contact linked to {customer_id} on {processor.name}",
            field="customer_id",
        )
    return link.contact_id


def plan_charge(processor: PaymentProcessor, req: ChargeRequest) -> ChargePlan:
    """Check everything that can be checked without Stripe; a ``ServiceError`` naming the field. Without a
    contact, the one linked to the request's customer."""
    if req.contact_id is None:
        req.contact_id = contact_of_customer(processor, req.customer_id)
    contact = db.session.get(Contact, req.contact_id)
    if contact is None or contact.is_deleted:
        raise ServiceError(f"Contact: paydesk has no contact #{req.contact_id}", field="contact_id")
    currency = common.currency_code(req.currency)
    amount = common.money(req.amount, currency, "amount", "Amount")
    description = check_text(req.description, "Description", "description")
    if len(description) > DESCRIPTION_MAX:
        raise ServiceError(f"Description: at most {DESCRIPTION_MAX} characters", field="description")
    suffix = _suffix(req.statement_descriptor_suffix)
    fee = common.money(req.application_fee, currency, "application_fee", "Application fee", required=False)
    assert amount is not None  # required=True: a missing amount was refused above
    if fee is not None and fee >= amount:
        raise ServiceError("Application fee: less than the amount charged", field="application_fee")
    if req.destination and not re.fullmatch(r"acct_[A-Za-z0-9]{1,250}", req.destination):
        raise ServiceError("Destination account: a connected account id (acct_...)", field="destination")
    if fee is not None and not req.destination:
        raise ServiceError(
            "Application fee: only with a destination account (the fee is what your platform "
            "keeps of a payment to it)",
            field="application_fee",
        )
    group = check_text(req.transfer_group, "Transfer group", "transfer_group")
    if len(group) > 255:
        raise ServiceError("Transfer group: at most 255 characters", field="transfer_group")
    if req.expires_after and req.capture:
        raise ServiceError(
            "Cancel the authorisation after (hours): only for an authorisation (capture: authorise only)",
            field="expires_after",
        )
    taken = sorted(set(req.metadata) & set(RESERVED_METADATA))
    if taken:
        raise ServiceError(
            f"Metadata: {', '.join(taken)} is set by paydesk; use another key", field="metadata"
        )
    if len(req.metadata) > common.METADATA_MAX_KEYS - len(RESERVED_METADATA):
        raise ServiceError(
            f"Metadata: at most {common.METADATA_MAX_KEYS - len(RESERVED_METADATA)} keys", field="metadata"
        )
    if req.payment_method and not re.fullmatch(r"(pm|card|src)_[A-Za-z0-9]{1,250}", req.payment_method):
        raise ServiceError("Card: a saved card's id (pm_...)", field="payment_method")
    links = customer_links(contact, processor.id)
    if req.customer_id:
        links = [s for s in links if s.customer_id == req.customer_id]
        if not links:
            raise ServiceError(
                f"Stripe customer: {req.customer_id} is not one of this contact's customers on "
                f"{processor.name}",
                field="customer_id",
            )
    if not links:
        raise ServiceError(
            f"Stripe customer: this contact has no Stripe customer on {processor.name}; create one "
            "and add a card first",
            field="customer_id",
        )
    if len(links) > 1:
        raise ServiceError(
            "Stripe customer: this contact has several; choose which to charge", field="customer_id"
        )
    req.description, req.transfer_group = description, group or None
    return ChargePlan(contact, links[0], amount, currency, description, suffix, fee, req)


def charged_payment(c: Contribution | None) -> Payment | None:
    """The contribution's completed charge (not one of its refunds), once recorded."""
    if c is None:
        return None
    return next((p for p in c.payments if not p.refund_id and p.status == COMPLETED), None)


def records_of(processor_id: int, object_id: str) -> tuple[Contribution | None, Payment | None]:
    """The contribution and charge payment of a PaymentIntent (pi_) or of a charge made without one (ch_):
    what a capture answers with."""
    if object_id.startswith("pi_"):
        c = contributions.by_intent(processor_id, object_id)
        return c, charged_payment(c)
    pay = contributions.charge_payment(processor_id, object_id)
    return (pay.contribution if pay is not None else None), pay


def _default_card(gw: Gateway, customer_id: str) -> str:
    try:
        cus = gw.retrieve("customers", customer_id)
    except GatewayError as err:
        raise stripe_failure(
            err, with_request=True, doing=f"refused to read customer {customer_id}"
        ) from None
    pm = sid((cus.get("invoice_settings") or {}).get("default_payment_method")) or sid(
        cus.get("default_source")
    )
    if not pm:
        raise ServiceError(
            f"Card: {customer_id} has no default card; add one or make one the default",
            field="payment_method",
        )
    return pm


def charge(processor: PaymentProcessor, req: ChargeRequest) -> ChargeOutcome:
    """Charge (or authorise) the contact's saved card: see the module docstring. Commits; Stripe's refusal is
    recorded (the contribution Failed, an audit entry with the request id) and returned, not raised."""
    plan = plan_charge(processor, req)
    gw = Gateway.for_processor(processor)
    customer_id = plan.link.customer_id
    # paydesk's unique invoice id, the same for one staff action: a double submit finds the first attempt. The
    # amount is part of it (as of Stripe's key): a key used again for another amount is another charge
    invoice_id = (
        uuid.uuid5(
            uuid.NAMESPACE_URL,
            f"paydesk:{processor.id}:{customer_id}:{req.action_key}:{plan.amount}:{plan.currency}",
        ).hex
        if req.action_key
        else uuid.uuid4().hex
    )
    sent = _sent_already(processor, invoice_id)
    if sent is not None:
        return sent
    card = req.payment_method or _default_card(gw, customer_id)

    immediate()  # the Pending contribution, committed before Stripe hears of it
    contact = db.session.get_one(Contact, plan.contact.id)
    c = _attempt_of(processor, customer_id, invoice_id)
    if c is None:
        c = Contribution(
            processor_id=processor.id,
            contact=contact,
            amount=plan.amount,
            currency=plan.currency,
            status=PENDING,
            customer_id=customer_id,
            receive_date=utcnow(),
            source=SOURCE,
        )
        db.session.add(c)
        db.session.flush()
        c.description = " ".join(x for x in (plan.description, f"{contact.id}-{c.id}", invoice_id) if x)[:500]
    contribution_id = c.id
    db.session.commit()

    key = idempotency_key("charge", customer_id, req.action_key, plan.amount)
    metadata = {
        **req.metadata,
        "contact_id": str(contact.id),
        "contribution_id": str(contribution_id),
        "invoice_id": invoice_id,
        "source": "paydesk staff charge",
    }
    params: dict[str, Any] = {
        "amount": plan.amount,
        "currency": plan.currency,
        "customer": customer_id,
        "payment_method": card,
        "payment_method_types": ["card"],
        "capture_method": "automatic" if req.capture else "manual",
        "description": c.description,
        "metadata": metadata,
    }
    if plan.suffix:
        params["statement_descriptor_suffix"] = plan.suffix
    if plan.fee:
        params["application_fee_amount"] = plan.fee
    if req.destination:
        params["transfer_data"] = {"destination": req.destination}
    if req.transfer_group:
        params["transfer_group"] = req.transfer_group
    parameters = {
        "amount": plan.amount,
        "currency": plan.currency,
        "customer": customer_id,
        "card": card,
        "capture": req.capture,
        "expires_after_hours": req.expires_after,
        "application_fee": plan.fee,
        "destination": req.destination,
        "transfer_group": req.transfer_group,
        "metadata": req.metadata,
        "invoice_id": invoice_id,
        "idempotency_key": key,
    }
    try:
        pi = gw.create("payment_intents", params, idempotency_key=f"{key}-intent")
    except GatewayError as err:
        return _failed(processor, contribution_id, None, err, parameters)
    _track(processor, contribution_id, pi, invoice_id, req)
    try:
        pi = gw.call(
            "payment_intents",
            "confirm",
            pi["id"],
            params={"off_session": True},
            idempotency_key=f"{key}-confirm",
        )
    except GatewayError as err:
        return _failed(processor, contribution_id, pi["id"], err, parameters)
    return _after_confirm(processor, contribution_id, dict(pi), pi.request_id, parameters)


def _attempt_of(processor: PaymentProcessor, customer_id: str, invoice_id: str) -> Contribution | None:
    """The Pending contribution an earlier submit of the same staff action made (before its intent existed)."""
    return db.session.scalar(
        select(Contribution)
        .where(
            Contribution.processor_id == processor.id,
            Contribution.customer_id == customer_id,
            Contribution.source == SOURCE,
            Contribution.description.like(f"%{invoice_id}"),
        )
        .limit(1)
    )


def _sent_already(processor: PaymentProcessor, invoice_id: str) -> ChargeOutcome | None:
    """The same staff action sent again (a double submit): its intent exists, so report it as Stripe has it now
    instead of charging again."""
    row = db.session.scalar(
        select(StripePaymentIntent).where(
            StripePaymentIntent.identifier == invoice_id, StripePaymentIntent.processor_id == processor.id
        )
    )
    if row is None or row.contribution_id is None:
        return None
    try:
        pi = Gateway.for_processor(processor).retrieve("payment_intents", row.stripe_intent_id)
    except GatewayError as err:
        raise stripe_failure(
            err, with_request=True, doing=f"refused to read {row.stripe_intent_id}"
        ) from None
    if pi.get("status") == "requires_confirmation":
        return None  # created, never confirmed: the same keys confirm it now
    out = _after_confirm(
        processor, row.contribution_id, dict(pi), pi.request_id, {"invoice_id": invoice_id, "repeated": True}
    )
    out.message = "This charge was sent already: " + out.message[0].lower() + out.message[1:]
    return out


def _track(
    processor: PaymentProcessor, contribution_id: int, pi: dict, invoice_id: str, req: ChargeRequest
) -> None:
    immediate()
    lock_objects([pi["id"]])
    c = db.session.get_one(Contribution, contribution_id)
    c.payment_intent_id = pi["id"]
    row = intents.sync_intent(processor, pi, stamp=0)
    row.contribution_id, row.contact_id = c.id, c.contact_id
    row.description = (c.description or "")[:255] or None
    row.identifier = invoice_id
    row.referrer = SOURCE
    if not req.capture:
        extra = json.loads(row.extra_data) if row.extra_data else {}
        extra["staff_authorisation"] = True
        if req.expires_after:
            extra["cancel_after"] = (utcnow() + timedelta(hours=req.expires_after)).isoformat(
                timespec="seconds"
            )
        row.extra_data = json.dumps(extra)
    db.session.commit()


def _failed(
    processor: PaymentProcessor,
    contribution_id: int,
    intent_id: str | None,
    err: GatewayError,
    parameters: dict,
) -> ChargeOutcome:
    immediate()
    c = db.session.get_one(Contribution, contribution_id)
    if err.http_status == 402 or err.kind == "card_error" or not err.transient:
        contributions.fail(c, f"Stripe: {err.message}")
    else:  # a passing failure: Stripe may have it; the webhook (or "refresh" on the intent) says
        c.failure_message = f"Stripe did not answer: {err.message}"[:500]
    rid = f" (Stripe request {err.request_id})" if err.request_id else ""
    message = f"Stripe refused the charge: {err.message}{rid}."
    audit.record(
        "payment.charge",
        object_type="contribution",
        object_id=str(c.id),
        processor_id=processor.id,
        parameters={**parameters, "intent": intent_id},
        ok=False,
        message=message,
        stripe_request_id=err.request_id,
        commit=False,
    )
    db.session.commit()
    failure = stripe_failure(err, with_request=True, doing="refused the charge")
    return ChargeOutcome(c, intent_id or "", "failed", message, err.request_id, failure)


def _after_confirm(
    processor: PaymentProcessor, contribution_id: int, pi: dict, request_id: str | None, parameters: dict
) -> ChargeOutcome:
    status = pi.get("status")
    reader = StripeReader(processor)
    charge = None
    if status == "succeeded":
        charge = reader.expanded(
            "charges", pi.get("latest_charge"), required=("balance_transaction", "amount_refunded", "status")
        )

    def work() -> Contribution:
        c = db.session.get_one(Contribution, contribution_id)
        intents.sync_intent(processor, pi, stamp=int(utcnow().timestamp()))
        if charge is not None:
            recorded, _ = charge_records.record_charge(reader, processor, charge)
            return recorded or c
        if status not in ("requires_capture", "processing"):
            contributions.fail(c, f"Stripe: {(pi.get('last_payment_error') or {}).get('message') or status}")
        return c

    c = write_after_reading(reader, work)
    amount = common.shown(c.amount, c.currency)
    if status == "succeeded":
        message = f"Charged {amount} ({pi['id']}): contribution #{c.id} is {c.status}."
    elif status == "requires_capture":
        message = f"Authorised {amount} ({pi['id']}); capture it from the intent's page. Contribution #{c.id} stays Pending."
    elif status == "processing":
        message = f"Stripe is processing {amount} ({pi['id']}); its webhook completes contribution #{c.id}."
    else:
        message = f"Stripe did not take the payment ({status}): contribution #{c.id} is {c.status}."
    ok = status in ("succeeded", "requires_capture", "processing")
    audit.record(
        "payment.charge",
        object_type="contribution",
        object_id=str(c.id),
        processor_id=processor.id,
        parameters={**parameters, "intent": pi["id"], "status": status},
        ok=ok,
        message=message,
        stripe_request_id=request_id,
        commit=False,
    )
    db.session.commit()
    return ChargeOutcome(c, pi["id"], str(status) if ok else "failed", message, request_id)
