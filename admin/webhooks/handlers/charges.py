"""charge.*: one-off payments complete their contribution; a subscription's charge goes the invoice way."""

from __future__ import annotations

from admin.dbutil import insert_ignore
from admin.models import CardTestingSignal
from admin.services.intents import queries as intents
from admin.services.records import contributions
from admin.services.records.charges import record_charge
from admin.stripe_shapes import currency_of, failure_message, minor_units, sid
from admin.timeutil import utcnow
from admin.webhooks.context import EventContext
from admin.webhooks.registry import handles

CHARGE_FIELDS = ("balance_transaction", "amount_refunded", "status", "captured")


def settle_charge(ctx: EventContext, charge: dict) -> None:
    """Record a charge's current state where it belongs: its invoice's contribution, or a one-off."""
    c, note = record_charge(ctx.reader, ctx.processor, charge, no_receipt=ctx.no_receipt)
    if c is None:
        ctx.ignore(note or "nothing to record")
    elif note:
        ctx.note(note)


@handles("charge.succeeded", "charge.captured", "charge.refunded", "charge.updated")
def charge_changed(ctx: EventContext) -> None:
    settle_charge(ctx, ctx.object())


@handles("charge.refund.updated", "refund.created", "refund.updated", "refund.failed")
def refund_changed(ctx: EventContext) -> None:
    refund = ctx.payload
    charge_id = sid(refund.get("charge"))
    if not charge_id:
        ctx.ignore("refund names no charge")
        return
    settle_charge(ctx, ctx.reader.get("charges", charge_id))  # always current: refunds change the charge


@handles("charge.failed")
def charge_failed(ctx: EventContext) -> None:
    charge = ctx.object()
    pi_id = sid(charge.get("payment_intent"))
    customer_id = sid(charge.get("customer"))
    known = pi_id and (intents.by_intent_id(pi_id) or contributions.by_intent(ctx.processor.id, pi_id))
    if not customer_id and not known:
        _card_testing_signal(ctx, charge)
        return
    message = failure_message(charge)
    invoice_id = contributions.invoice_of_charge(ctx.reader, ctx.processor, charge)
    if invoice_id:
        contributions.fail_invoice_attempt(ctx.reader, ctx.processor, invoice_id)
        return
    contributions.record_failed_one_off(ctx.reader, ctx.processor, charge, message)


def _card_testing_signal(ctx: EventContext, charge: dict) -> None:
    outcome = charge.get("outcome") or {}
    card = (charge.get("payment_method_details") or {}).get("card") or {}
    insert_ignore(
        CardTestingSignal,
        {
            "processor_id": ctx.processor.id,
            "charge_id": charge["id"],
            "event_id": ctx.row.event_id,
            "amount": minor_units(charge, "amount", default=None),
            "currency": currency_of(charge) if charge.get("currency") is not None else None,
            "failure_code": charge.get("failure_code"),
            "decline_code": outcome.get("reason"),
            "card_fingerprint": card.get("fingerprint"),
            "card_country": card.get("country"),
            "created_at": utcnow(),
        },
        ["charge_id"],
    )
    ctx.note("card-testing signal: failed charge with no customer and no known intent")
