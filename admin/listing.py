"""The one list-page pattern: a typed filter parsed from the query string, and keyset pages.

Every resource (events, audit, jobs, subscriptions, intents, contributions, ...) defines a
filter dataclass of :class:`Filter`. Its fields are the query parameters, named like the
CLI options (``type``, ``status``, ``ppid``, ``since``, ...); repeated parameters give a
list. The same object drives the page, the CSV export, the CLI listing and the API, so a
filtered view is a link staff can share.

Pages are keyset pages (no OFFSET): rows are ordered by a key (a tuple of non-null
columns, newest first) and a page is "the next ``size`` rows after this key". The cursor
travels in the query string as ``after`` (older rows) or ``before`` (newer rows).
"""

from __future__ import annotations

import base64
import dataclasses
import json
import math
import types
import typing
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field, fields
from datetime import UTC, date, datetime, timedelta
from typing import Any, ClassVar, Generic, TypeVar

from sqlalchemy import Select, and_, func, literal, or_, select, union_all
from sqlalchemy.orm import QueryableAttribute
from sqlalchemy.sql import ColumnElement

from admin.dbutil import MAX_ID
from admin.extensions import db
from admin.money import parse_money
from admin.stripe_shapes import stripe_id_problem

PAGE_SIZES = (25, 100)
MAX_INT = MAX_ID  # whole-number filters are ids: what an Integer primary key holds everywhere
MAX_TEXT = 255  # a text filter: an id (Stripe's are at most 255 characters), an email, words to search for

# How the pages label each field, for messages about it ("Created from: 'x' is not a date"); a filter class
# names its own in ``LABELS`` where its page says more, else ``metadata={"label": ...}``, else these, else the
# field's name in words. The CLI names the option instead (``--since``).
LABELS = {
    "ppid": "Processor",
    "q": "Search",
    "since": "From",
    "until": "To (inclusive)",
    "size": "Per page",
    "after": "Page link",
    "before": "Page link",
    "min_amount": "Amount from",
    "max_amount": "Amount to",
    "contact_id": "Contact #",
    "recur_id": "Recurring contribution #",
    "contribution_id": "Contribution #",
    "trxn_id": "Transaction id",
    "customer": "Stripe customer",
    "month": "Month",
}
T = TypeVar("T")
# A column of a list's query: a mapped attribute (``Event.id``) or a column expression (a label).
ColumnLike = ColumnElement[Any] | QueryableAttribute[Any]
KeyColumn = ColumnLike  # a keyset page's sort key column


class FilterError(ValueError):
    """A query parameter that cannot be read; ``field`` names it."""

    def __init__(self, field_name: str, message: str):
        super().__init__(f"{field_name}: {message}")
        self.field = field_name
        self.message = message


def _strings(values: list[str]) -> list[str]:
    out: list[str] = []
    for v in values:
        out.extend(p.strip() for p in v.split(",") if p.strip())
    return out


EARLIEST, LATEST = datetime(1970, 1, 1), datetime(9000, 1, 1)  # what a filter's dates may be


def _parse_date(name: str, text: str, end: bool) -> datetime:
    """``2026-11-03`` (a whole day: the start, or the day after for an end) or ``2026-11-03T14:05``
    (naive: UTC; with an offset: converted to UTC)."""
    try:
        if len(text) <= 10:
            day = date.fromisoformat(text)
            value = datetime(day.year, day.month, day.day)
            value = value + timedelta(days=1) if end and value < LATEST else value
        else:
            value = datetime.fromisoformat(text)
            if value.tzinfo is not None:
                value = value.astimezone(UTC).replace(tzinfo=None)
    except (ValueError, OverflowError):
        raise FilterError(name, f"{text[:40]!r} is not a date (use YYYY-MM-DD)") from None
    if not EARLIEST <= value <= LATEST:
        raise FilterError(name, f"{text[:40]!r} is out of range (1970 to 8999)")
    return value


def _parse_int(name: str, text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise FilterError(name, f"{text!r} is not a whole number") from None
    if not 0 <= value <= MAX_INT:
        raise FilterError(name, f"{text[:30]!r} is out of range (0 to {MAX_INT:,})")
    return value


@dataclass
class Filter:
    """Base of every resource filter. Subclasses add fields (str, int, bool, datetime, list[str],
    and ``Amount`` for money given in major units) with defaults; ``size`` and the cursors are
    common to all. Field metadata ``{"end": True}`` makes a date mean "before the end of that day"."""

    size: int = 25
    after: str | None = None
    before: str | None = None

    PAGING: ClassVar[tuple[str, ...]] = ("size", "after", "before")
    LABELS: ClassVar[dict[str, str]] = {}

    @classmethod
    def label(cls, name: str) -> str:
        """What the page calls the field ``name`` (its label on the filter form)."""
        f = next((f for f in fields(cls) if f.name == name), None)
        return (
            cls.LABELS.get(name)
            or (f.metadata.get("label") if f else None)
            or LABELS.get(name)
            or name.replace("_", " ").capitalize()
        )

    @classmethod
    def from_args(cls, args: Any) -> tuple[Any, dict[str, str]]:
        """Parse a MultiDict (``request.args``) or a plain dict. Returns (filter, errors by field);
        a field that cannot be read keeps its default and its error is reported, so the page still
        shows the rest of the filter applied and says what was wrong."""
        values: dict[str, Any] = {}
        errors: dict[str, str] = {}
        hints = typing.get_type_hints(cls)
        for f in fields(cls):
            raw = _get_list(args, f.name)
            if not raw:
                continue
            try:
                values[f.name] = _convert(f, hints[f.name], raw)
                known = f.metadata.get("known")
                problem = known(values[f.name]) if known and values[f.name] not in (None, "", []) else None
                if problem:
                    del values[f.name]
                    raise FilterError(f.name, problem)
            except FilterError as err:
                errors[err.field] = err.message
        obj = cls(**values)
        if obj.size not in PAGE_SIZES:
            obj.size = PAGE_SIZES[0]
        obj.check(errors)
        return obj, errors

    @classmethod
    def parse_or_raise(cls, args: Any, *, options: bool = False) -> Any:
        """``from_args`` for callers that cannot show a partly applied filter (a job's stored criteria,
        a confirmation, the CLI): the filter, or a ``ServiceError`` naming every field that cannot be
        read (by its label on the page, or as CLI options, ``--min-amount``, with ``options``)."""
        from admin.errors import ServiceError

        flt, errors = cls.from_args(args)
        if errors:

            def name(k: str) -> str:
                return f"--{k.replace('_', '-')}" if options else cls.label(k)

            raise ServiceError(
                "; ".join(f"{name(k)}: {v}" for k, v in errors.items()), field=next(iter(errors))
            )
        return flt

    def check(self, errors: dict[str, str]) -> None:
        """Cross-field checks (e.g. a range the wrong way round); add to ``errors``."""

    def to_args(self, **changes: Any) -> dict[str, Any]:
        """Query parameters for this filter (defaults left out), with ``changes`` applied;
        any change other than paging starts again at the first page."""
        data = dataclasses.replace(self, **changes)
        if set(changes) - set(self.PAGING):
            data.after = data.before = None
        out: dict[str, Any] = {}
        for f in fields(data):
            value = getattr(data, f.name)
            if value in (None, "", [], False) or value == f.default:
                continue
            if isinstance(value, datetime):
                value = (
                    value.strftime("%Y-%m-%d")
                    if value == datetime(value.year, value.month, value.day)
                    else value.isoformat(timespec="minutes")
                )
                if f.metadata.get("end") and len(value) == 10:
                    value = (date.fromisoformat(value) - timedelta(days=1)).isoformat()
            elif isinstance(value, bool):
                value = "1"
            elif isinstance(value, Amount):
                value = value.text
            out[f.name] = value
        return out

    def criteria(self) -> dict[str, Any]:
        """The filter without paging, as plain JSON-able values (what a bulk job stores)."""
        return {k: v for k, v in self.to_args().items() if k not in self.PAGING}

    @property
    def is_filtered(self) -> bool:
        return bool(self.criteria())


@dataclass(frozen=True)
class Amount:
    """Money typed by staff in major units ("12.50"), kept as text until the currency is known."""

    text: str

    def minor(self, currency: str) -> int:
        return parse_money(self.text, currency)


def _get_list(args: Any, name: str) -> list[str]:
    if hasattr(args, "getlist"):
        values = args.getlist(name)
    else:
        v = args.get(name)
        values = [] if v is None else list(v) if isinstance(v, list | tuple) else [v]
    return [str(v) for v in values if str(v).strip() != ""]


def _convert(f: dataclasses.Field, hint: Any, raw: list[str]) -> Any:
    name = f.name
    base = hint
    if isinstance(hint, types.UnionType) or typing.get_origin(hint) is typing.Union:
        base = next(a for a in typing.get_args(hint) if a is not type(None))
    text = raw[-1].strip()
    if typing.get_origin(base) is list:
        items = _strings(raw)
        if any(len(i) > MAX_TEXT for i in items):
            raise FilterError(name, f"at most {MAX_TEXT} characters each, please")
        choices = f.metadata.get("choices")
        if choices:
            bad = [i for i in items if i not in choices]
            if bad:
                raise FilterError(name, f"{bad[0]!r} is not one of {', '.join(choices)}")
        return items
    if base is bool:
        return text.lower() in ("1", "true", "yes", "on")
    if base is int:
        return _parse_int(name, text)
    if base is datetime:
        return _parse_date(name, text, bool(f.metadata.get("end")))
    if base is Amount:
        try:
            parse_money(text, "usd")
        except (ValueError, ArithmeticError) as err:
            raise FilterError(
                name, str(err) if isinstance(err, ValueError) else f"{text[:40]!r} is not an amount"
            ) from None
        return Amount(text)
    if len(text) > 10_000:
        raise FilterError(name, "is too long")
    if name not in Filter.PAGING and len(text) > MAX_TEXT:
        raise FilterError(name, f"at most {MAX_TEXT} characters, please")
    choices = f.metadata.get("choices")
    if choices and text not in choices:
        raise FilterError(name, f"{text[:40]!r} is not one of {', '.join(choices)}")
    if (
        "stripe_id" in f.metadata
    ):  # the kind of Stripe object it names: its shape checked before Stripe is asked
        problem = stripe_id_problem(text, f.metadata["stripe_id"])
        if problem:
            raise FilterError(name, problem)
    return text


def processor_field() -> Any:
    """A filter's ``ppid``: an existing payment processor, or the filter names the error (as ``/reconcile``
    does) rather than silently matching nothing."""
    return field(default=None, metadata={"label": "Processor", "known": _missing_processor})


def _missing_processor(ppid: int) -> str | None:
    from admin.models import PaymentProcessor

    return (
        None
        if db.session.get(PaymentProcessor, ppid) is not None
        else f"there is no payment processor {ppid}"
    )


# -- keyset pages -----------------------------------------------------------------------


def encode_cursor(values: Sequence[Any]) -> str:
    def plain(v: Any) -> Any:
        return {"dt": v.isoformat()} if isinstance(v, datetime) else v

    data = json.dumps([plain(v) for v in values], separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


DAMAGED = "this page link is damaged; start again from the first page"


def decode_cursor(text: str | None, width: int | None, name: str = "after") -> list[Any] | None:
    if not text:
        return None
    try:
        data = json.loads(base64.urlsafe_b64decode(text + "=" * (-len(text) % 4)))
        if not isinstance(data, list):
            raise TypeError
        values = [datetime.fromisoformat(v["dt"]) if isinstance(v, dict) else v for v in data]
    except (ValueError, TypeError, KeyError):
        raise FilterError(name, DAMAGED) from None
    if width is not None and len(values) != width:
        raise FilterError(name, DAMAGED)
    return values


def _python_type(col: KeyColumn) -> type | None:
    try:
        return col.type.python_type
    except NotImplementedError:
        return None


def _check_cursor(values: list[Any] | None, key: Sequence[KeyColumn], name: str) -> list[Any] | None:
    """A cursor's values must be what its key columns hold: a crafted one (``[1e30, 1e30]``, ``[null, null]``,
    ``[[1], [2]]``) is a damaged link, never a query the database cannot run."""
    if values is None:
        return None
    for value, col in zip(values, key, strict=True):
        kind = _python_type(col)
        if kind is int:
            ok = type(value) is int and abs(value) <= MAX_INT
        elif kind is datetime:
            ok = isinstance(value, datetime) and value.tzinfo is None and EARLIEST <= value <= LATEST
        elif kind is str:
            ok = isinstance(value, str) and len(value) <= 1000
        elif kind is float:
            ok = type(value) in (int, float) and math.isfinite(value) and abs(value) <= 2**63
        else:
            ok = isinstance(value, int | str | datetime) and not isinstance(value, bool)
        if not ok:
            raise FilterError(name, DAMAGED)
    return values


def _beyond(cols: Sequence[KeyColumn], values: Sequence[Any], older: bool) -> ColumnElement:
    """Rows strictly after ``values`` in descending key order (older) or before it (newer).

    Written as ``a <= x AND (a < x OR (a = x AND b < y))`` rather than a row-value comparison
    so that both databases use the index on the key columns: the leading ``a <= x`` is a range
    they start the index scan at, however deep the page (bench/events_page.py)."""
    parts = []
    for i, col in enumerate(cols):
        cmp = col < values[i] if older else col > values[i]
        parts.append(and_(*[c == v for c, v in zip(cols[:i], values[:i], strict=True)], cmp))
    if len(cols) == 1:
        return parts[0]
    return and_(cols[0] <= values[0] if older else cols[0] >= values[0], or_(*parts))


@dataclass
class Page(Generic[T]):
    rows: list[T]
    size: int
    next_after: str | None = None  # cursor for older rows
    prev_before: str | None = None  # cursor for newer rows
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def first(self) -> bool:
        return self.prev_before is None

    def __iter__(self) -> Iterator[T]:
        return iter(self.rows)

    def __len__(self) -> int:
        return len(self.rows)


def keyset_page(
    query: Select, key: Sequence[KeyColumn], flt: Filter, *, key_of: Any = None, scalars: bool = True
) -> Page:
    """One page of ``query`` (already filtered) in descending ``key`` order.

    ``key_of(row)`` gives a row's key values (default: the attributes named like the key
    columns). With ``flt.after`` the page holds the rows older than that cursor; with
    ``flt.before`` the rows newer than it (fetched ascending, then reversed)."""
    key = list(key)
    # every key column has a name (a mapped attribute, or a label): ColumnElement.key is only Optional in general
    key_of = key_of or (lambda row: [getattr(row, typing.cast(str, c.key)) for c in key])
    size = flt.size
    after = _check_cursor(decode_cursor(flt.after, len(key)), key, "after")
    before = None if after else _check_cursor(decode_cursor(flt.before, len(key), "before"), key, "before")
    q = query
    if after:
        q = q.where(_beyond(key, after, older=True))
    if before:
        q = q.where(_beyond(key, before, older=False)).order_by(*[c.asc() for c in key])
    else:
        q = q.order_by(*[c.desc() for c in key])
    result = db.session.execute(q.limit(size + 1))
    rows = list(result.scalars() if scalars else result.all())
    more = len(rows) > size
    rows = rows[:size]
    if before:
        rows.reverse()
    page = Page(rows=rows, size=size)
    if rows:
        older_exists = more if not before else True
        newer_exists = bool(after) or (more if before else False)
        if older_exists:
            page.next_after = encode_cursor(key_of(rows[-1]))
        if newer_exists:
            page.prev_before = encode_cursor(key_of(rows[0]))
    return page


def iterate_ids(
    query: Select, id_col: ColumnElement, *, after_id: int | None = None, chunk: int = 200
) -> Iterator[list[int]]:
    """Ids matching ``query`` in descending order, ``chunk`` at a time, from below ``after_id``:
    what bulk jobs walk (the last id of a chunk is their cursor)."""
    last = after_id
    while True:
        q = query.with_only_columns(id_col).order_by(id_col.desc()).limit(chunk)
        if last is not None:
            q = q.where(id_col < last)
        ids = list(db.session.scalars(q))
        if not ids:
            return
        yield ids
        last = ids[-1]


def sequence_page(items: Sequence[T], key_of: Any, flt: Filter) -> Page[T]:
    """A keyset page of rows already in memory (e.g. a comparison with Stripe), newest first by
    ``key_of(row)`` (a tuple of plain values), with the same cursors as :func:`keyset_page`."""
    ordered = sorted(items, key=key_of, reverse=True)
    size = flt.size
    after = decode_cursor(flt.after, None)
    before = None if after else decode_cursor(flt.before, None, "before")
    try:
        if after:
            rest = [r for r in ordered if tuple(key_of(r)) < tuple(after)]
            rows, older, newer = rest[:size], len(rest) > size, True
        elif before:
            ahead = [r for r in ordered if tuple(key_of(r)) > tuple(before)]
            rows, older, newer = ahead[-size:], True, len(ahead) > size
    except TypeError:  # a cursor of other types than the key's
        raise FilterError("before" if before else "after", DAMAGED) from None
    if not (after or before):
        rows, older, newer = ordered[:size], len(ordered) > size, False
    page = Page(rows=list(rows), size=size)
    if rows:
        page.next_after = encode_cursor(list(key_of(rows[-1]))) if older else None
        page.prev_before = encode_cursor(list(key_of(rows[0]))) if newer else None
    return page


def page_or_first(page_of: Any, flt: Filter, errors: dict[str, str]) -> Page:
    """``page_of(flt)``; a damaged page link is reported in ``errors`` and the first page shown."""
    try:
        return page_of(flt)
    except FilterError as err:
        errors[err.field] = err.message
        flt.after = flt.before = None
        return page_of(flt)


EXPORT_CHUNK = 1000


def walk(
    query: Select,
    key: Sequence[KeyColumn],
    flt: Filter,
    *,
    key_of: Any = None,
    scalars: bool = False,
    chunk: int = EXPORT_CHUNK,
) -> Iterator[list[Any]]:
    """Every row of a filter's query in its page order, ``chunk`` rows at a time (keyset pages, so
    100,000 rows never sit in memory at once): what CSV exports and the CLI listings read."""
    at = dataclasses.replace(flt, size=chunk, after=None, before=None)
    while True:
        page = keyset_page(query, key, at, key_of=key_of, scalars=scalars)
        if page.rows:
            yield page.rows
        if not page.next_after:
            return
        at.after = page.next_after


# -- counts and totals that stay cheap on a big table --------------------------------------

# Status counts are exact up to this many per status; above it a count says "more than COUNT_CAP" (``count_label``).
# An exact GROUP BY over a million rows costs 80-140 ms per page view (bench/events_page.py); counting at most
# COUNT_CAP + 1 rows of each status reads a bounded slice of an index on (status, sort key).
COUNT_CAP = 10_000


def capped_counts(
    query: Select,
    status_col: ColumnLike,
    id_col: ColumnLike,
    statuses: Sequence[str],
    *,
    cap: int | None = None,
) -> dict[str, int]:
    """How many rows of ``query`` (a filter's query without its status choice) have each status, each counted
    up to ``cap + 1`` (default ``COUNT_CAP``): one statement, a ``LIMIT`` per status."""
    cap = COUNT_CAP if cap is None else cap
    parts = [
        select(literal(status).label("status"), func.count().label("n")).select_from(
            query.with_only_columns(id_col).where(status_col == status).limit(cap + 1).subquery()
        )
        for status in statuses
    ]
    counts = dict.fromkeys(statuses, 0)
    if parts:
        counts.update({status: int(n) for status, n in db.session.execute(union_all(*parts)).all()})
    return counts


def count_label(n: int, cap: int | None = None) -> str:
    """A capped count as the pages show it: "1,234", or "10,000+" above the cap (default ``COUNT_CAP``)."""
    cap = COUNT_CAP if cap is None else cap
    return f"{cap:,}+" if n > cap else f"{n:,}"


# Totals (money per currency) of a filter matching more rows than this are computed once per SUMMARY_TTL seconds
# and process, and shown with their time; a filter that narrows the list to fewer rows gets exact figures on
# every view. Summing 200,000 contributions costs 150-215 ms (bench/list_pages.py); counting to the cap a few.
SUMMARY_CAP = 20_000
SUMMARY_TTL = 60.0


@dataclass
class Summary(Generic[T]):
    """Counts or totals for a list page: ``value``, and ``as_of`` (when it was computed) when it is a cached
    figure for a broad filter rather than computed for this view."""

    value: T
    as_of: datetime | None = None


def summary(
    name: str, flt: Filter, compute: Any, rows: Select, *, cap: int | None = None, ttl: float | None = None
) -> Summary:
    """``compute()`` for ``flt``: exact when ``rows`` (the filter's query) matches at most ``cap`` rows, else
    the value computed for the same filter within the last ``ttl`` seconds by this process (or now)."""
    import time

    from flask import current_app

    cap = SUMMARY_CAP if cap is None else cap
    ttl = SUMMARY_TTL if ttl is None else ttl
    bounded = rows.with_only_columns(literal(1), maintain_column_froms=True).limit(cap + 1).subquery()
    if (db.session.scalar(select(func.count()).select_from(bounded)) or 0) <= cap:  # a count: never None
        return Summary(compute())
    cache: dict = current_app.extensions.setdefault("paydesk_list_summaries", {})
    key = (name, json.dumps(flt.criteria(), sort_keys=True, default=str))
    now = time.monotonic()
    hit = cache.get(key)
    if hit and now - hit[0] < ttl:
        return hit[1]
    if len(cache) > 256:
        cache.clear()
    value = Summary(compute(), datetime.now(UTC).replace(tzinfo=None))
    cache[key] = (now, value)
    return value
