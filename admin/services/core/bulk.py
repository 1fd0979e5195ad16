"""What a bulk job acts on, and how it walks it: the rows ticked on a page (``params["ids"]``) or
everything matching a filter (``params["filter"]``: the filter's criteria, read again as each chunk
is read). One walker for every bulk job (replay, ignore, cancel, ...): newest id first, the cursor
is the last id done (``ctx.cursor["last_id"]``), the total is counted once.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

from sqlalchemy import Select, func, select

from admin.extensions import db
from admin.listing import iterate_ids
from admin.services.core.jobs import JobContext


def selection(params: dict, model: Any, filter_query: Callable[[dict], Select]) -> Select:
    """The rows chosen: by id, or ``filter_query(criteria)``."""
    if params.get("ids"):
        return select(model).where(model.id.in_([int(i) for i in params["ids"]]))
    return filter_query(params.get("filter") or {})


def count(query: Select, model: Any) -> int:
    return int(
        db.session.scalar(select(func.count()).select_from(query.with_only_columns(model.id).subquery())) or 0
    )


def each(ctx: JobContext, query: Select, model: Any) -> Iterator[Any]:
    """The rows of ``query`` from below the cursor, newest first; ``ctx.total`` is set on the first
    slice. After a row's unit of work is done, the caller calls :func:`done`."""
    if ctx.total is None:
        ctx.total = count(query, model)
    for ids in iterate_ids(query, model.id, after_id=ctx.cursor.get("last_id")):
        for row_id in ids:
            row = db.session.get(model, row_id)
            if row is not None:
                yield row


def done(ctx: JobContext, row: Any) -> None:
    ctx.cursor["last_id"] = row.id
    ctx.done += 1


def describe(params: dict, verb: str, noun: str) -> str:
    """A bulk job's title: "Replay 3 selected events", "Cancel payment intents matching status=incomplete"."""
    if params.get("ids"):
        n = len(params["ids"])
        return f"{verb} {n} selected {noun}{'s' if n != 1 else ''}"
    crit = params.get("filter") or {}
    bits = ", ".join(
        f"{k}={','.join(map(str, v)) if isinstance(v, list) else v}" for k, v in sorted(crit.items())
    )
    return f"{verb} {noun}s matching {bits or 'everything'}"
