"""payment_intent.*: keep StripePaymentIntent in step; a succeeded one-off intent completes its contribution."""

from __future__ import annotations

from admin.models import Contribution, StripePaymentIntent
from admin.services.intents import queries as intents
from admin.services.records import contributions
from admin.stripe_shapes import failure_message
from admin.webhooks.context import EventContext
from admin.webhooks.registry import handles


def _current(ctx: EventContext) -> tuple[dict, StripePaymentIntent | None]:
    """The intent's state to apply and its tracked row (None: paydesk tracks none yet)."""
    pi = ctx.object()
    tracked = intents.by_intent_id(pi["id"])
    if tracked is not None and not ctx.row.refetch and ctx.created < (tracked.stripe_updated or 0):
        pi = ctx.fresh_object()  # a newer state is recorded already: use Stripe's current one
    return pi, tracked


def _apply(
    ctx: EventContext,
    pi: dict,
    tracked: StripePaymentIntent | None,
    paid_for: Contribution | None = None,
    made: bool = False,
) -> StripePaymentIntent:
    """Apply the intent's state; written with the handler's next statement or when the event commits."""
    return intents.sync_intent(
        ctx.processor,
        pi,
        stamp=ctx.created,
        row=tracked,
        looked_up=True,
        paid_for=paid_for,
        made=made,
        flush=False,
    )


def _sync(ctx: EventContext) -> tuple[dict, StripePaymentIntent]:
    pi, tracked = _current(ctx)
    return pi, _apply(ctx, pi, tracked)


@handles(
    "payment_intent.created",
    "payment_intent.requires_action",
    "payment_intent.amount_capturable_updated",
    "payment_intent.processing",
    "payment_intent.partially_funded",
)
def intent_changed(ctx: EventContext) -> None:
    _sync(ctx)


@handles("payment_intent.succeeded")
def intent_succeeded(ctx: EventContext) -> None:
    pi, tracked = _current(ctx)
    if pi.get("status") != "succeeded":
        _apply(ctx, pi, tracked)
        ctx.note(f"intent is {pi.get('status')} in Stripe now")
        return
    invoice_id = contributions.invoice_of_intent(ctx.reader, ctx.processor, pi)
    if invoice_id:
        _apply(ctx, pi, tracked)
        contributions.settle_invoice(ctx.reader, ctx.processor, invoice_id, no_receipt=ctx.no_receipt)
        ctx.note(f"recurring payment for {invoice_id}")
        return
    charge = ctx.reader.expanded(
        "charges", pi.get("latest_charge"), required=("balance_transaction", "amount_refunded", "status")
    )
    if charge is None:
        _apply(ctx, pi, tracked)
        ctx.ignore("succeeded intent has no charge")
        return
    c, made = contributions.one_off_charge(ctx.reader, ctx.processor, charge, no_receipt=ctx.no_receipt)
    # the intent after its contribution: a new one is inserted once, with the contribution it paid for
    intents.link_contribution(_apply(ctx, pi, tracked, paid_for=c, made=made), c)


@handles("payment_intent.payment_failed")
def intent_failed(ctx: EventContext) -> None:
    pi, _ = _sync(ctx)
    invoice_id = contributions.invoice_of_intent(ctx.reader, ctx.processor, pi)
    if invoice_id:
        contributions.fail_invoice_attempt(ctx.reader, ctx.processor, invoice_id)
        return
    if contributions.record_failed_intent(ctx.reader, ctx.processor, pi, failure_message(pi)) is None:
        ctx.note("no customer and no contribution for this intent: nothing to record")


@handles("payment_intent.canceled")
def intent_canceled(ctx: EventContext) -> None:
    pi, _ = _sync(ctx)
    c = contributions.by_intent(ctx.processor.id, pi["id"])
    if c is not None:
        contributions.cancel(
            c, f"payment intent cancelled ({pi.get('cancellation_reason') or 'no reason given'})"
        )
