"""The trigger feed: new customers, orders, charges and invoice items in a commit-ordered sequence.

Filling: an ``after_flush`` listener on every ORM session adds one ``trigger_feed`` row per new
Stripe customer link, new charge payment, one-off contribution that completes, and contribution made
for an invoice, in the same transaction as the record (so a rolled-back record leaves no row, and a
committed one always has its row). ``INSERT ... ON CONFLICT DO NOTHING`` on (topic, processor, object):
an object is fed once, however often it is saved.

Reading (why items are never missed or repeated although transactions commit out of order): ids and
times are handed out when a row is written, not when it commits, so "everything after id N" misses a row
with a smaller id whose transaction commits after a reader passed N. Here each row carries the id of the
transaction that wrote it (``pg_current_xact_id()`` on PostgreSQL), and a reader only returns rows whose
transaction id is below ``pg_snapshot_xmin(pg_current_snapshot())``: the oldest transaction still running
when it reads. Every transaction below that horizon has ended, so its rows are all visible now, and any
row committed later belongs to a transaction at or above the horizon, which sorts after everything
returned. Items are ordered and paged by ``(txid, id)``; the cursor is that pair. The price: a
transaction that stays open holds back newer items (not lose them) until it ends. On SQLite writes are
serialised (one writer holds the lock from its first write to its commit), so ids are handed out in
commit order already and ``txid`` is 0.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import event, inspect, literal_column, select, tuple_
from sqlalchemy.orm import Session

from admin.extensions import db
from admin.models import COMPLETED, Contribution, Payment, StripeCustomer, TriggerFeed

PG_TXID = "(pg_current_xact_id()::text)::bigint"
PG_HORIZON = "(pg_snapshot_xmin(pg_current_snapshot())::text)::bigint"


def _changed(obj: Any, attr: str) -> bool:
    return inspect(obj).attrs[attr].history.has_changes()


def _rows_for(session) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    new = set(session.new)
    for obj in list(session.new) + list(session.dirty):
        if isinstance(obj, StripeCustomer) and obj in new:
            rows.append(
                {
                    "topic": "customer",
                    "processor_id": obj.processor_id,
                    "object_id": obj.customer_id,
                    "record_type": "stripe_customer",
                    "record_id": obj.id,
                }
            )
        elif isinstance(obj, Payment) and obj in new:
            if obj.charge_id and not obj.refund_id and (obj.amount or 0) > 0:
                rows.append(
                    {
                        "topic": "charge",
                        "processor_id": obj.processor_id,
                        "object_id": obj.charge_id,
                        "record_type": "payment",
                        "record_id": obj.id,
                    }
                )
        elif isinstance(obj, Contribution):
            if obj.recur_id is None and obj.status == COMPLETED and (obj in new or _changed(obj, "status")):
                rows.append(
                    {
                        "topic": "order",
                        "processor_id": obj.processor_id,
                        "object_id": f"contribution:{obj.id}",
                        "record_type": "contribution",
                        "record_id": obj.id,
                    }
                )
            if obj.invoice_id and (obj in new or _changed(obj, "invoice_id")):
                rows.append(
                    {
                        "topic": "invoice_item",
                        "processor_id": obj.processor_id,
                        "object_id": f"contribution:{obj.id}",
                        "record_type": "contribution",
                        "record_id": obj.id,
                    }
                )
    return rows


def _after_flush(session, _context) -> None:
    rows = _rows_for(session)
    if not rows:
        return
    conn = session.connection()
    dialect = conn.dialect.name
    if dialect == "postgresql":
        from sqlalchemy.dialects.postgresql import insert
    else:
        from sqlalchemy.dialects.sqlite import insert
    table = TriggerFeed.__table__
    txid = literal_column(PG_TXID) if dialect == "postgresql" else 0
    for row in rows:  # a handful per flush at most
        stmt = (
            insert(table)
            .values(**row, txid=txid, created_at=_now())
            .on_conflict_do_nothing(index_elements=["topic", "processor_id", "object_id"])
        )
        conn.execute(stmt)


def _now():
    from admin.timeutil import utcnow

    return utcnow()


def install() -> None:
    """Listen to every ORM session (paydesk's, and any a script opens on its engine), once per process."""
    if not event.contains(Session, "after_flush", _after_flush):
        event.listen(Session, "after_flush", _after_flush)


def encode(txid: int, row_id: int) -> str:
    return f"{txid}-{row_id}"


def decode(cursor: str | None) -> tuple[int, int] | None:
    if not cursor:
        return None
    txid, _, row_id = cursor.partition("-")
    return int(txid), int(row_id)


def read(topic: str, after: str | None, limit: int) -> tuple[list[TriggerFeed], str | None, bool]:
    """Up to ``limit`` feed rows of ``topic`` after the cursor, oldest first; the next cursor (the given
    one when nothing is new) and whether more are waiting."""
    q = select(TriggerFeed).where(TriggerFeed.topic == topic)
    if db.session.get_bind().dialect.name == "postgresql":
        q = q.where(TriggerFeed.txid < literal_column(PG_HORIZON))
    position = decode(after)
    if position is not None:
        q = q.where(tuple_(TriggerFeed.txid, TriggerFeed.id) > tuple_(*position))
    rows = list(db.session.scalars(q.order_by(TriggerFeed.txid, TriggerFeed.id).limit(limit + 1)))
    more = len(rows) > limit
    rows = rows[:limit]
    cursor = encode(rows[-1].txid, rows[-1].id) if rows else (after or None)
    return rows, cursor, more
