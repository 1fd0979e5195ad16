"""customer.updated / customer.deleted: keep the contact and its Stripe customer link in step."""

from __future__ import annotations

from sqlalchemy import exists, select

from admin.extensions import db
from admin.models import EV_SUCCESS, StripeCustomer, StripeEvent
from admin.webhooks.context import EventContext
from admin.webhooks.registry import handles


def _link(ctx: EventContext) -> StripeCustomer | None:
    return db.session.scalar(
        select(StripeCustomer).where(
            StripeCustomer.processor_id == ctx.processor.id, StripeCustomer.customer_id == ctx.payload["id"]
        )
    )


def _newer_applied(ctx: EventContext) -> bool:
    return bool(
        db.session.scalar(
            select(
                exists().where(
                    StripeEvent.processor_id == ctx.processor.id,
                    StripeEvent.customer_id == ctx.payload["id"],
                    StripeEvent.type == "customer.updated",
                    StripeEvent.created > ctx.created,
                    StripeEvent.status == EV_SUCCESS,
                )
            )
        )
    )


@handles("customer.updated")
def customer_updated(ctx: EventContext) -> None:
    link = _link(ctx)
    if link is None:
        ctx.ignore("customer is not linked to a contact yet (it will be on its first payment)")
        return
    cust = ctx.object(stale=_newer_applied(ctx))
    contact = link.contact
    if cust.get("name"):
        contact.display_name = cust["name"]
    if cust.get("email"):
        contact.email = cust["email"]
    if cust.get("phone"):
        contact.phone = cust["phone"]
    postal = (cust.get("address") or {}).get("postal_code")
    if postal:
        contact.postal_code = postal


@handles("customer.deleted")
def customer_deleted(ctx: EventContext) -> None:
    link = _link(ctx)
    if link is None:
        ctx.ignore("customer is not linked to a contact")
        return
    link.deleted = True
