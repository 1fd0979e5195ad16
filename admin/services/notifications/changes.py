"""Which record changes notify, noticed in the one place every change passes: the ORM session.

An ``after_flush`` listener (on every session, like the trigger feed's) notes contributions that become
Completed or Failed, contributions whose refunded amount grows (a refund, partial or full), and recurring
contributions that are new or change status, with the values they had before (the status columns keep
their old value: ``active_history``). ``before_commit`` turns the notes into deliveries and outbox tasks
(``delivery.queue``) as the last writes of that same transaction: a change rolled back notifies no one;
a committed one always has its deliveries. Webhook handlers, staff actions, imports and jobs all notify
alike, without calling anything.
"""

from __future__ import annotations

import logging
from datetime import datetime
from typing import Any

from sqlalchemy import event, inspect
from sqlalchemy.orm import InstanceState, Session, UOWTransaction

from admin.models import COMPLETED, FAILED, Contribution, ContributionRecur

log = logging.getLogger(__name__)

PENDING = "paydesk_notifications"  # session.info key: {(type, object type, id): (object, previous)}


def _iso(value: Any) -> Any:
    return value.isoformat(timespec="seconds") + "Z" if isinstance(value, datetime) else value


def contribution_data(c: Contribution) -> dict[str, Any]:
    fields = (
        "id",
        "status",
        "amount",
        "currency",
        "fee_amount",
        "net_amount",
        "refunded_amount",
        "contact_id",
        "processor_id",
        "recur_id",
        "trxn_id",
        "invoice_id",
        "payment_intent_id",
        "customer_id",
        "receive_date",
        "source",
        "failure_message",
        "donation_form_id",
    )
    return {"object": "contribution", **{f: _iso(getattr(c, f)) for f in fields}}


def recurring_data(r: ContributionRecur) -> dict[str, Any]:
    fields = (
        "id",
        "status",
        "stripe_status",
        "amount",
        "currency",
        "interval",
        "interval_count",
        "contact_id",
        "processor_id",
        "subscription_id",
        "customer_id",
        "start_date",
        "next_sched_date",
        "cancel_date",
        "failure_count",
    )
    return {"object": "recurring_contribution", **{f: _iso(getattr(r, f)) for f in fields}}


def _old(state: InstanceState, attr: str, is_new: bool) -> tuple[bool, Any]:
    """(changed, value before) of a column in this flush."""
    if is_new:
        return True, None
    hist = state.attrs[attr].history
    if not hist.has_changes():
        return False, None
    before = hist.deleted[0] if hist.deleted else None
    return (hist.added[0] if hist.added else None) != before, before


_CONTRIBUTIONS, _RECURRING = Contribution.__mapper__, ContributionRecur.__mapper__


def _after_flush(session: Session, flush_context: UOWTransaction) -> None:
    # The flush's own record of what it wrote, by mapper: a flush of no contribution or recurring
    # contribution costs two lookups (most flushes), not a walk over session.new and session.dirty.
    handled = flush_context.mappers
    contributions, recurring = handled.get(_CONTRIBUTIONS), handled.get(_RECURRING)
    if not contributions and not recurring:
        return
    notes: dict | None = None
    for state in (*(contributions or ()), *(recurring or ())):
        if flush_context.states[state][0]:  # being deleted
            continue
        obj, is_new = state.obj(), state.key is None  # the identity key comes after this event: None = new
        found: list[tuple[str, str, dict[str, Any]]] = []
        if isinstance(obj, Contribution):
            changed, before = _old(state, "status", is_new)
            if changed and obj.status in (COMPLETED, FAILED):
                found.append(
                    (
                        "contribution.completed" if obj.status == COMPLETED else "contribution.failed",
                        "contribution",
                        {"status": before},
                    )
                )
            grew, was = _old(state, "refunded_amount", is_new)
            if grew and (obj.refunded_amount or 0) > (was or 0):
                found.append(
                    (
                        "contribution.refunded",
                        "contribution",
                        {"refunded_amount": was or 0, "status": before if changed else obj.status},
                    )
                )
        elif isinstance(obj, ContributionRecur):
            changed, before = _old(state, "status", is_new)
            if changed:
                found.append(("recurring.status_changed", "recurring_contribution", {"status": before}))
        for type_, object_type, previous in found:
            if notes is None:
                notes = session.info.setdefault(PENDING, {})
            notes.setdefault(
                (type_, object_type, obj.id), (obj, previous)
            )  # the first "before" of the transaction


def _before_commit(session: Session) -> None:
    if session.new or session.dirty or session.deleted:
        session.flush()  # every change of this transaction noted first
    notes = session.info.pop(PENDING, None)
    if not notes:
        return
    from admin.extensions import db
    from admin.services.notifications import delivery

    try:
        ours = session is db.session()
    except RuntimeError:  # no application context: a script's own session
        ours = False
    if not ours:
        log.warning(
            "%d notification(s) not queued: the change was committed outside paydesk's session", len(notes)
        )
        return
    # not undone by a rolled-back savepoint, nor deleted
    kept = [(key, note) for key, note in notes.items() if inspect(note[0]).persistent]
    if not kept:
        return
    # made only when ``queue`` asks for them: not at all when no URL wants notifications
    changes = (
        delivery.Change(
            type_,
            object_type,
            object_id,
            obj.processor_id,
            contribution_data(obj) if object_type == "contribution" else recurring_data(obj),
            {k: _iso(v) for k, v in previous.items()},
        )
        for (type_, object_type, object_id), (obj, previous) in kept
    )
    delivery.queue(session, changes)


def _forget(session: Session, *_args) -> None:
    session.info.pop(PENDING, None)


def install() -> None:
    """Listen to every ORM session, once per process (``create_app``)."""
    for name, fn in (
        ("after_flush", _after_flush),
        ("before_commit", _before_commit),
        ("after_rollback", _forget),
    ):
        if not event.contains(Session, name, fn):
            event.listen(Session, name, fn)
