"""customer.updated / customer.deleted: keep the contact and its Stripe customer link in step."""

from __future__ import annotations

from sqlalchemy import bindparam, exists, select
from sqlalchemy.orm import joinedload

from admin.extensions import db
from admin.models import EV_SUCCESS, StripeCustomer, StripeEvent
from admin.webhooks.context import EventContext
from admin.webhooks.registry import handles

# built once (every customer event asks): the link with its contact in one query
_LINK = (
    select(StripeCustomer)
    .options(joinedload(StripeCustomer.contact))
    .where(
        StripeCustomer.processor_id == bindparam("processor_id"),
        StripeCustomer.customer_id == bindparam("customer_id"),
    )
)
_NEWER_APPLIED = select(
    exists().where(
        StripeEvent.processor_id == bindparam("processor_id"),
        StripeEvent.customer_id == bindparam("customer_id"),
        StripeEvent.type == "customer.updated",
        StripeEvent.created > bindparam("created"),
        StripeEvent.status == EV_SUCCESS,
    )
)


def _link(ctx: EventContext) -> StripeCustomer | None:
    return db.session.scalar(_LINK, {"processor_id": ctx.processor.id, "customer_id": ctx.payload["id"]})


def _newer_applied(ctx: EventContext) -> bool:
    return bool(
        db.session.scalar(
            _NEWER_APPLIED,
            {"processor_id": ctx.processor.id, "customer_id": ctx.payload["id"], "created": ctx.created},
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
