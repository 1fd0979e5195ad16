"""The trigger feed: new customers, orders, charges and invoice items in commit order.

Why not "everything after id N" of the records themselves: ids (and times) are handed out when a row is
written, not when its transaction commits, so a reader that has passed N never sees a row with a smaller
id whose transaction commits later; that item would be missed for good.

So each feed row gets its id *at commit*, in commit order. An ``after_flush`` listener on every ORM
session notes the new Stripe customer links, new charge payments, one-off contributions that complete,
and contributions made for an invoice; ``before_commit`` writes their ``trigger_feed`` rows as the last
statements of that same transaction (a rolled-back record leaves no row; a committed one always has its
row). On PostgreSQL it first takes a transaction-scoped advisory lock (``pg_advisory_xact_lock``), held
until the commit is visible, so feed ids are drawn one committing transaction after another: whoever
can see feed row N can see every row below N, and "rows after the cursor, by id" never skips one. The
lock is held only for those inserts and the commit itself (no Stripe call, no other row lock is taken
under it), so writers queue for a moment and cannot deadlock on it. On SQLite one writer holds the
database from its first write to its commit, which orders the ids the same way without a lock.

``INSERT ... ON CONFLICT DO NOTHING`` on (topic, processor, object): an object is fed once, however often
it is saved.

(An alternative was tagging rows with ``pg_current_xact_id()`` and reading only below
``pg_snapshot_xmin``: no queueing for writers, but every long writing transaction anywhere on the
PostgreSQL server, in any database, holds every trigger back until it ends; on a shared server that was
minutes.)
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import event, inspect, select, text
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from admin.extensions import db
from admin.models import COMPLETED, Contribution, Payment, StripeCustomer, TriggerFeed

PENDING = "paydesk_trigger_feed"  # session.info key: feed rows noted since the transaction began
FEED_LOCK = 0x70647466  # "pdtf": the advisory lock that orders feed ids by commit


def _changed(obj: Any, attr: str) -> bool:
    return inspect(obj).attrs[attr].history.has_changes()


def _rows_for(session) -> list[tuple[Any, dict[str, Any]]]:
    rows: list[tuple[Any, dict[str, Any]]] = []
    new = set(session.new)
    for obj in list(session.new) + list(session.dirty):
        if isinstance(obj, StripeCustomer) and obj in new:
            rows.append((obj, customer_row(obj)))
        elif isinstance(obj, Payment) and obj in new:
            if obj.charge_id and not obj.refund_id and (obj.amount or 0) > 0:
                rows.append(
                    (
                        obj,
                        {
                            "topic": "charge",
                            "processor_id": obj.processor_id,
                            "object_id": obj.charge_id,
                            "record_type": "payment",
                            "record_id": obj.id,
                        },
                    )
                )
        elif isinstance(obj, Contribution):
            if obj.recur_id is None and obj.status == COMPLETED and (obj in new or _changed(obj, "status")):
                rows.append(
                    (
                        obj,
                        {
                            "topic": "order",
                            "processor_id": obj.processor_id,
                            "object_id": f"contribution:{obj.id}",
                            "record_type": "contribution",
                            "record_id": obj.id,
                        },
                    )
                )
            if obj.invoice_id and (obj in new or _changed(obj, "invoice_id")):
                rows.append(
                    (
                        obj,
                        {
                            "topic": "invoice_item",
                            "processor_id": obj.processor_id,
                            "object_id": f"contribution:{obj.id}",
                            "record_type": "contribution",
                            "record_id": obj.id,
                        },
                    )
                )
    return rows


def customer_row(link: StripeCustomer) -> dict[str, Any]:
    """The feed row of a new Stripe customer link (its id known)."""
    return {
        "topic": "customer",
        "processor_id": link.processor_id,
        "object_id": link.customer_id,
        "record_type": "stripe_customer",
        "record_id": link.id,
    }


def note(session, row: dict[str, Any]) -> None:
    """Feed ``row`` (e.g. :func:`customer_row`) at this transaction's commit, with the rows the listener
    notes: for a record written by a Core INSERT, which no flush shows the listener. Note it once the record
    is written, outside any savepoint that may yet be rolled back."""
    session.info.setdefault(PENDING, []).append((None, row))


def _after_flush(session, _context) -> None:
    rows = _rows_for(session)
    if rows:
        session.info.setdefault(PENDING, []).extend(rows)


def _before_commit(session) -> None:
    if session.new or session.dirty or session.deleted:
        session.flush()  # every record of this transaction noted before the feed is written
    pending = session.info.pop(PENDING, None)
    if not pending:
        return
    # not undone by a rolled-back savepoint (a noted row has no object: see note)
    rows = [row for obj, row in pending if obj is None or inspect(obj).persistent]
    if not rows:
        return
    conn = session.connection()
    dialect = conn.dialect.name
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    if dialect == "postgresql":
        conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": FEED_LOCK})
    now = _now()
    stmt = _INSERTS.get(dialect)
    if stmt is None:
        stmt = _INSERTS[dialect] = insert(TriggerFeed.__table__).on_conflict_do_nothing(
            index_elements=["topic", "processor_id", "object_id"]
        )
    conn.execute(stmt, [{**row, "created_at": now} for row in rows])  # one executemany for them all


_INSERTS: dict = {}  # dialect: the feed's INSERT .. ON CONFLICT DO NOTHING, built once (compiled once)


def _forget(session, *_args) -> None:
    session.info.pop(PENDING, None)


def _now():
    from admin.timeutil import utcnow

    return utcnow()


def install() -> None:
    """Listen to every ORM session (paydesk's, and any a script opens on its engine), once per process."""
    for name, fn in (
        ("after_flush", _after_flush),
        ("before_commit", _before_commit),
        ("after_rollback", _forget),
    ):
        if not event.contains(Session, name, fn):
            event.listen(Session, name, fn)


def read(topic: str, after: str | None, limit: int) -> tuple[list[TriggerFeed], str | None, bool]:
    """Up to ``limit`` feed rows of ``topic`` after the cursor (a feed id), oldest first; the next cursor (the
    given one when nothing is new) and whether more are waiting."""
    q = select(TriggerFeed).where(TriggerFeed.topic == topic)
    if after:
        q = q.where(TriggerFeed.id > int(after))
    rows = list(db.session.scalars(q.order_by(TriggerFeed.id).limit(limit + 1)))
    more = len(rows) > limit
    rows = rows[:limit]
    cursor = str(rows[-1].id) if rows else (after or None)
    return rows, cursor, more
