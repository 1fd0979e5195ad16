"""invoice.*: one contribution per invoice (trxn_id = invoice id), its charge as the payment."""

from __future__ import annotations

from admin.services.records import contributions
from admin.webhooks.context import EventContext
from admin.webhooks.registry import handles


@handles("invoice.finalized")
def invoice_finalized(ctx: EventContext) -> None:
    inv = ctx.object()
    if not inv.get("amount_due"):
        ctx.ignore("nothing to collect on this invoice")
        return
    contributions.record_invoice_finalized(ctx.reader, ctx.processor, inv)


@handles("invoice.paid", "invoice.payment_succeeded")
def invoice_paid(ctx: EventContext) -> None:
    """Both arrive for one payment; whichever comes second finds the work done."""
    inv = ctx.object()
    if inv.get("status") != "paid" and not ctx.row.refetch:
        inv = ctx.fresh_object()
    if inv.get("status") != "paid":
        ctx.ignore(f"invoice is {inv.get('status')} in Stripe now")
        return
    contributions.record_invoice_paid(ctx.reader, ctx.processor, inv, no_receipt=ctx.no_receipt)


@handles("invoice.payment_failed")
def invoice_payment_failed(ctx: EventContext) -> None:
    inv = ctx.object()
    c = contributions.record_invoice_failed(ctx.reader, ctx.processor, inv)
    if c.status != "Failed":
        ctx.note(f"contribution is {c.status}; a later attempt succeeded")
