"""customer.subscription.*: the recurring contribution follows the subscription."""

from __future__ import annotations

from admin.services.records import recurring
from admin.webhooks.context import EventContext
from admin.webhooks.registry import handles


@handles(
    "customer.subscription.created",
    "customer.subscription.updated",
    "customer.subscription.deleted",
    "customer.subscription.paused",
    "customer.subscription.resumed",
)
def subscription_changed(ctx: EventContext) -> None:
    sub = ctx.object()
    recur = recurring.by_subscription(ctx.processor.id, sub["id"])
    if not ctx.row.refetch and recurring.is_stale(recur, ctx.created):
        sub = ctx.fresh_object()  # a newer state is applied already: use Stripe's current one
    # an update is written when the event commits; a new one at once, so that a concurrent first payment's
    # insert of it (which does not hold this subscription's lock) fails here, in the handler, and is retried
    recurring.sync_subscription(
        ctx.reader, ctx.processor, sub, stamp=ctx.created, recur=recur, looked_up=True, flush=recur is None
    )
