"""checkout.session.completed: complete the contribution the session references, when the payment is for it.

On a Payment Link the payer chooses ``client_reference_id``: a session completes the contribution it names
only when its amount, currency and (where both are known) customer are the contribution's and nothing else
paid that contribution. Otherwise the named contribution is left alone, and the payment is recorded as a
contribution of its own, without a receipt, and kept for staff on ``/reconcile`` (``services/records/unmatched``).
"""

from __future__ import annotations

from admin.dbutil import parse_id
from admin.extensions import db
from admin.models import Contribution
from admin.services.records import contributions, recurring, unmatched
from admin.stripe_shapes import currency_of, minor_units, sid
from admin.webhooks.context import EventContext
from admin.webhooks.registry import handles


def _referenced(ctx: EventContext, session: dict) -> Contribution | None:
    ref = session.get("client_reference_id") or (session.get("metadata") or {}).get("contribution_id")
    contribution_id = parse_id(ref)
    if contribution_id is None:
        return None
    c = db.session.get(Contribution, contribution_id)
    return c if c is not None and c.processor_id == ctx.processor.id else None


def _paid(ctx: EventContext, session: dict) -> tuple[int | None, str | None]:
    """What the session charges: its total, else its PaymentIntent's amount."""
    if session.get("amount_total") is not None and session.get("currency"):
        return minor_units(session, "amount_total"), currency_of(session)
    pi_ref = session.get("payment_intent")
    pi = ctx.reader.expanded("payment_intents", pi_ref, required=("amount", "currency")) if pi_ref else None
    if pi is not None:
        return minor_units(pi, "amount", default=None), currency_of(pi)
    return None, None


def _checked(
    ctx: EventContext,
    session: dict,
    c: Contribution | None,
    pi_id: str | None,
    inv_id: str | None,
    recur_id: int | None = None,
) -> tuple[Contribution | None, bool]:
    """The named contribution when this session may complete it, and whether the payment is unmatched."""
    if c is None:
        return None, False
    amount, currency = _paid(ctx, session)
    reason = unmatched.mismatch(
        c, session, amount, currency, payment_intent_id=pi_id, invoice_id=inv_id, recur_id=recur_id
    )
    if reason is None:
        return c, False
    unmatched.note(ctx.processor.id, session, c, reason, amount, currency)
    ctx.note(
        f"session names contribution {c.id}, which it does not match ({reason}): the payment is recorded "
        "on its own, without a receipt, for staff on /reconcile"
    )
    return None, True


@handles("checkout.session.completed", "checkout.session.async_payment_succeeded")
def checkout_completed(ctx: EventContext) -> None:
    session = ctx.object()
    mode = session.get("mode")
    if mode == "payment":
        pi_id = sid(session.get("payment_intent"))
        c, foreign = _checked(ctx, session, _referenced(ctx, session), pi_id, None)
        if c is not None and pi_id:
            c.payment_intent_id = c.payment_intent_id or pi_id
            db.session.flush()
        if session.get("payment_status") != "paid" or not pi_id:
            ctx.ignore(f"session payment is {session.get('payment_status')}; a later event completes it")
            return
        pi = ctx.reader.expanded(
            "payment_intents", session.get("payment_intent"), required=("latest_charge",)
        )
        charge = (
            ctx.reader.expanded(
                "charges",
                pi.get("latest_charge"),
                required=("balance_transaction", "amount_refunded", "status"),
            )
            if pi
            else None
        )
        if charge is None:
            ctx.ignore("paid session has no charge yet")
            return
        recorded: Contribution | None = contributions.record_one_off_charge(
            ctx.reader, ctx.processor, charge, no_receipt=ctx.no_receipt or foreign
        )
        if foreign:
            unmatched.recorded_on(ctx.processor.id, session, recorded)
    elif mode == "subscription":
        sub_id = sid(session.get("subscription"))
        inv_id = sid(session.get("invoice"))
        recur = recurring.ensure_recur(ctx.reader, ctx.processor, sub_id) if sub_id else None
        c, foreign = _checked(
            ctx, session, _referenced(ctx, session), None, inv_id, recur.id if recur else None
        )
        if c is not None and recur is not None:
            c.recur_id = c.recur_id or recur.id
        if (
            c is not None
            and inv_id
            and not c.invoice_id
            and contributions.by_invoice(ctx.processor.id, inv_id) is None
        ):
            c.invoice_id = inv_id
            db.session.flush()
        if inv_id:
            recorded = contributions.settle_invoice(
                ctx.reader, ctx.processor, inv_id, no_receipt=ctx.no_receipt or foreign
            )
            if foreign:
                unmatched.recorded_on(ctx.processor.id, session, recorded)
    else:
        ctx.ignore(f"checkout session in {mode} mode records no contribution")
