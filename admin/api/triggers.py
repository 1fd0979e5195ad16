"""Polling triggers: ``/triggers/new-customers``, ``new-orders``, ``new-charges``, ``new-invoice-items``.

Items after the client's cursor, oldest first, with the connector's fields (OnNew*ResponseItem) and
paydesk's ids; the cursor is a position in the commit-ordered trigger feed (see ``feed``), so no item is
missed or repeated even when records commit out of order. Fields paydesk does not keep are null.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from flask import request
from pydantic import BaseModel
from sqlalchemy import select
from sqlalchemy.orm import selectinload

from admin.extensions import db
from admin.models import (
    COMPLETED,
    PARTIALLY_REFUNDED,
    REFUNDED,
    Contribution,
    Payment,
    StripeCustomer,
)

from . import feed, schemas
from .blueprint import bp
from .spec import responses, spec

CHARGE_STATUS = {COMPLETED: "succeeded", REFUNDED: "succeeded", PARTIALLY_REFUNDED: "succeeded"}
ORDER_STATUS = {COMPLETED: "paid", REFUNDED: "returned", PARTIALLY_REFUNDED: "paid"}


def _email(contact: Any) -> str | None:
    return contact.email if contact is not None else None


def _customers(ids: list[int]) -> dict[int, dict]:
    rows = db.session.scalars(
        select(StripeCustomer).where(StripeCustomer.id.in_(ids)).options(selectinload(StripeCustomer.contact))
    )
    return {
        r.id: {
            "id": r.customer_id,
            "created": r.created_at,
            "email": _email(r.contact),
            "name": r.contact.display_name if r.contact else None,
            "processor_id": r.processor_id,
            "contact_id": r.contact_id,
        }
        for r in rows
    }


def _charges(ids: list[int]) -> dict[int, dict]:
    rows = db.session.scalars(
        select(Payment)
        .where(Payment.id.in_(ids))
        .options(selectinload(Payment.contribution).selectinload(Contribution.contact))
    )
    out = {}
    for p in rows:
        c = p.contribution
        out[p.id] = {
            "id": p.charge_id,
            "amount": p.amount,
            "amount_refunded": c.refunded_amount or 0,
            "captured": True,
            "created": p.payment_date or p.created_at,
            "currency": p.currency,
            "customer": c.customer_id,
            "description": c.description,
            "failure_message": c.failure_message,
            "invoice": c.invoice_id,
            "paid": p.status in CHARGE_STATUS,
            "receipt_email": _email(c.contact),
            "refunded": c.status == REFUNDED,
            "status": CHARGE_STATUS.get(p.status, "failed"),
            "processor_id": p.processor_id,
            "payment_id": p.id,
            "contribution_id": c.id,
            "contact_id": c.contact_id,
        }
    return out


def _contributions(ids: list[int]) -> list[Contribution]:
    return list(
        db.session.scalars(
            select(Contribution)
            .where(Contribution.id.in_(ids))
            .options(selectinload(Contribution.contact), selectinload(Contribution.recur))
        )
    )


def _orders(ids: list[int]) -> dict[int, dict]:
    return {
        c.id: {
            "id": c.payment_intent_id or c.trxn_id or f"contribution_{c.id}",
            "amount": c.amount,
            "amount_returned": c.refunded_amount or 0,
            "charge": c.trxn_id,
            "created": c.created_at,
            "currency": c.currency,
            "customer": c.customer_id,
            "email": _email(c.contact),
            "status": ORDER_STATUS.get(c.status, "canceled"),
            "updated": c.updated_at,
            "processor_id": c.processor_id,
            "contribution_id": c.id,
            "contact_id": c.contact_id,
        }
        for c in _contributions(ids)
    }


def _invoice_items(ids: list[int]) -> dict[int, dict]:
    return {
        c.id: {
            "id": c.invoice_id,
            "amount": c.amount,
            "currency": c.currency,
            "customer": c.customer_id,
            "date": c.receive_date or c.created_at,
            "description": c.description,
            "invoice": c.invoice_id,
            "subscription": c.recur.subscription_id if c.recur else None,
            "processor_id": c.processor_id,
            "contribution_id": c.id,
            "recur_id": c.recur_id,
            "contact_id": c.contact_id,
        }
        for c in _contributions(ids)
    }


def _trigger(
    path: str,
    topic: str,
    build: Callable[[list[int]], dict[int, dict]],
    item: type[BaseModel],
    listing: type[BaseModel],
    summary: str,
) -> None:
    def view():
        query = request.context.query
        rows, cursor, more = feed.read(topic, query.after, query.limit)
        found = build([r.record_id for r in rows])
        data = [
            item.model_validate(found[r.record_id]).model_dump(mode="json")
            for r in rows
            if r.record_id in found
        ]
        return {"data": data, "has_more": more, "next_cursor": cursor}

    name = path.replace("-", "_")
    view.__name__ = name
    view.__doc__ = summary
    validated = spec.validate(
        query=schemas.TriggerQuery, resp=responses(200, listing), tags=["triggers"], operation_id=name
    )(view)
    bp.add_url_rule(f"/triggers/{path}", endpoint=name, view_func=validated, methods=["GET"])


_trigger(
    "new-customers",
    "customer",
    _customers,
    schemas.NewCustomerItem,
    schemas.NewCustomers,
    "When a customer is added (OnNewCustomer): new Stripe customers linked to contacts",
)
_trigger(
    "new-orders",
    "order",
    _orders,
    schemas.NewOrderItem,
    schemas.NewOrders,
    "When an order is added (OnNewOrder): one-off contributions (and checkout sessions) that completed",
)
_trigger(
    "new-charges",
    "charge",
    _charges,
    schemas.NewChargeItem,
    schemas.NewCharges,
    "When a charge is added (OnNewCharge): charges recorded as payments",
)
_trigger(
    "new-invoice-items",
    "invoice_item",
    _invoice_items,
    schemas.NewInvoiceItem,
    schemas.NewInvoiceItems,
    "When an invoice item is added (OnNewInvoiceItem): contributions made for Stripe invoices",
)
