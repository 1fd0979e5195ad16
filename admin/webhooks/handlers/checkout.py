"""checkout.session.completed: complete the contribution the session references."""

from __future__ import annotations

from ...dbutil import parse_id
from ...extensions import db
from ...models import Contribution
from ...services import contributions, recurring
from ...stripe_shapes import sid
from ..context import EventContext
from ..registry import handles


def _referenced(ctx: EventContext, session: dict) -> Contribution | None:
    ref = session.get("client_reference_id") or (session.get("metadata") or {}).get("contribution_id")
    contribution_id = parse_id(ref)
    if contribution_id is None:
        return None
    c = db.session.get(Contribution, contribution_id)
    return c if c is not None and c.processor_id == ctx.processor.id else None


@handles("checkout.session.completed", "checkout.session.async_payment_succeeded")
def checkout_completed(ctx: EventContext) -> None:
    session = ctx.object()
    c = _referenced(ctx, session)
    mode = session.get("mode")
    if mode == "payment":
        pi_id = sid(session.get("payment_intent"))
        if c is not None and pi_id:
            c.payment_intent_id = c.payment_intent_id or pi_id
            db.session.flush()
        if session.get("payment_status") != "paid" or not pi_id:
            ctx.ignore(f"session payment is {session.get('payment_status')}; a later event completes it")
            return
        pi = ctx.reader.expanded("payment_intents", session.get("payment_intent"), required=("latest_charge",))
        charge = ctx.reader.expanded("charges", pi.get("latest_charge"),
                                     required=("balance_transaction", "amount_refunded", "status"))
        if charge is None:
            ctx.ignore("paid session has no charge yet")
            return
        contributions.record_one_off_charge(ctx.reader, ctx.processor, charge, no_receipt=ctx.no_receipt)
    elif mode == "subscription":
        sub_id = sid(session.get("subscription"))
        inv_id = sid(session.get("invoice"))
        if sub_id:
            recur = recurring.ensure_recur(ctx.reader, ctx.processor, sub_id)
            if c is not None:
                c.recur_id = c.recur_id or recur.id
        if c is not None and inv_id and not c.invoice_id and contributions.by_invoice(ctx.processor.id, inv_id) is None:
            c.invoice_id = inv_id
            db.session.flush()
        if inv_id:
            contributions.settle_invoice(ctx.reader, ctx.processor, inv_id, no_receipt=ctx.no_receipt)
    else:
        ctx.ignore(f"checkout session in {mode} mode records no contribution")
