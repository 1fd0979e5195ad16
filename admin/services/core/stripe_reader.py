"""Cached reads from one processor's Stripe account, for the length of one operation.

Handlers and imports ask for the same object several times while they resolve
links (charge -> intent -> invoice); each is fetched once (a lookup list, such as a
charge's refunds, too; and "Stripe has no such object"). With ``fresh=True``
expanded objects inside payloads are not trusted and are fetched again.

:func:`write_after_reading` runs database writes that read Stripe through a reader
with no request to Stripe inside the write transaction; :func:`read_then_write` is the whole
skeleton of a staff action that records what Stripe has (read, audit a refusal, write, audit).
:func:`stripe_page` is one page of a Stripe list for the list pages that show Stripe's own lists.
"""

from __future__ import annotations

import builtins
import contextlib
import functools
import json
from collections.abc import Callable, Iterator
from typing import Any, TypedDict, TypeVar

from admin.dbutil import immediate
from admin.errors import ServiceError, stripe_failure
from admin.extensions import db
from admin.listing import DAMAGED, Filter, FilterError, Page, decode_cursor, encode_cursor
from admin.models import PaymentProcessor
from admin.services.core import audit
from admin.stripe_gateway import Gateway, GatewayError
from admin.stripe_shapes import stripe_id_problem
from admin.timeutil import to_unix

PAGE = 100  # Stripe's largest list page
T = TypeVar("T")
R = TypeVar("R")


class NotFetched(Exception):
    """A reader kept offline was asked for something it has not read yet (see :func:`write_after_reading`)."""

    def __init__(self, reader: StripeReader, key: tuple, fetch: Callable[[], Any]):
        super().__init__(f"not read yet: {key}")
        self.reader, self.key, self._fetch = reader, key, fetch

    def fetch(self) -> None:
        """Read it now (outside any write transaction), so the reader has it next time."""
        self.reader._fetch_into_cache(self.key, self._fetch)


class StripeReader:
    def __init__(self, processor: PaymentProcessor, gateway: Gateway | None = None, *, fresh: bool = False):
        self.processor = processor
        self._gateway = gateway
        self.fresh = fresh
        self._cache: dict[tuple, Any] = {}  # what was read: an object, a list, or Stripe's "no such object"
        self._offline = False
        self.request_ids: list[str] = []  # of every call made, for the record of an attempt

    def _read(self, key: tuple, fetch: Callable[[], Any], *, keep: bool = True) -> Any:
        """What was read for ``key`` already, else ``fetch()`` (kept when ``keep``). Offline, a miss is
        ``NotFetched``."""
        if key in self._cache:
            hit = self._cache[key]
            if isinstance(hit, GatewayError):
                raise hit
            return hit
        if self._offline:
            raise NotFetched(self, key, fetch)
        if not keep:
            return fetch()
        return self._fetch_into_cache(key, fetch)

    def _fetch_into_cache(self, key: tuple, fetch: Callable[[], Any]) -> Any:
        try:
            value = self._cache[key] = fetch()
        except GatewayError as err:
            if err.not_found:  # an answer like any other: asking again changes nothing
                self._cache[key] = err
            raise
        return value

    @contextlib.contextmanager
    def offline(self):
        """Answer only from what was read already; anything else raises ``NotFetched``."""
        was, self._offline = self._offline, True
        try:
            yield self
        finally:
            self._offline = was

    def _note(self, result: Any) -> Any:
        rid = getattr(result, "request_id", None)
        if rid:
            self.request_ids.append(rid)
        return result

    @property
    def gateway(self) -> Gateway:
        if self._gateway is None:
            self._gateway = Gateway.for_processor(self.processor)
        return self._gateway

    def get(self, resource: str, obj_id: str, expand: list[str] | None = None) -> dict:
        return self._read(
            (resource, obj_id),
            lambda: dict(self._note(self.gateway.retrieve(resource, obj_id, expand=expand))),
        )

    def remember(self, resource: str, obj: dict) -> dict:
        """Keep an object this operation already has (e.g. from a list page), so asking for it by
        id does not fetch it again."""
        self._cache[(resource, obj["id"])] = obj
        return obj

    def list_page(self, resource: str, **params: Any) -> tuple[list[dict], bool]:
        """One page of a list endpoint and whether Stripe has more: (data, has_more). Not kept (a
        long list is read once, page by page)."""
        params.setdefault("limit", PAGE)

        def fetch() -> tuple[list[dict], bool]:
            res = self._note(self.gateway.list(resource, **params))
            return list(res.get("data") or []), bool(res.get("has_more"))

        return self._read(_list_key("page", resource, params), fetch, keep=False)

    def pages(
        self, resource: str, *, starting_after: str | None = None, limit: int | None = None, **params: Any
    ) -> Iterator[list[dict]]:
        """Stripe's whole list of ``resource`` (newest first) from after ``starting_after``, a page of up
        to 100 at a time, at most ``limit`` objects in all: the one pager for every Stripe list.

        Each object is remembered (asking for it by id later fetches nothing) and each page's request
        id is collected. A caller that has seen enough stops iterating: no further page is asked for.
        Parameters Stripe filters by (``created``, ``subscription``, ``type``, ...) pass through."""
        left = limit
        while left is None or left > 0:
            data, more = self.list_page(
                resource, limit=min(PAGE, left or PAGE), starting_after=starting_after, **params
            )
            data = [o for o in data if isinstance(o, dict) and o.get("id")]
            if left is not None:
                data = data[:left]
                left -= len(data)
            for obj in data:
                self.remember(resource, obj)
            if data:
                yield data
            if not more or not data:
                return
            starting_after = data[-1]["id"]

    def list(self, resource: str, **params: Any) -> list[dict]:
        """One page (up to 100) of a list endpoint, for a lookup (a charge's refunds)."""
        params.setdefault("limit", PAGE)
        return self._read(_list_key("list", resource, params), lambda: self._list(resource, params))

    # below the method ``list``, the class body's ``list`` is that method: annotations name the builtin
    def _list(self, resource: str, params: dict[str, Any]) -> builtins.list[dict]:
        return list(self._note(self.gateway.list(resource, **params)).get("data") or [])

    def list_optional(self, resource: str, **params: Any) -> builtins.list[dict] | None:
        """Like ``list``, but None where the endpoint does not exist on this server or API version."""
        params.setdefault("limit", PAGE)

        def fetch() -> list[dict] | None:
            try:
                return self._list(resource, params)
            except GatewayError as err:
                if (
                    err.not_found
                    or err.http_status in (400, 501)
                    or (err.http_status == 500 and "implemented" in err.message.lower())
                ):
                    return None
                raise

        return self._read(_list_key("optional", resource, params), fetch)

    def expanded(self, resource: str, ref: Any, required: tuple[str, ...] = ()) -> dict | None:
        """The object behind an expandable field: the expanded copy when it can be trusted, else fetched."""
        if ref is None:
            return None
        if isinstance(ref, dict) and not self.fresh and all(k in ref for k in required):
            return ref
        obj_id = ref.get("id") if isinstance(ref, dict) else ref
        return self.get(resource, obj_id) if obj_id else None


def _list_key(kind: str, resource: str, params: dict[str, Any]) -> tuple:
    return (kind, resource, json.dumps(params, sort_keys=True, default=str))


class Cursors(TypedDict):
    starting_after: str | None
    ending_before: str | None


def filter_cursors(flt: Filter) -> Cursors:
    """A list page's ``after`` / ``before`` cursors (the Stripe id they carry) as Stripe's ``starting_after`` /
    ``ending_before``, for :func:`stripe_page`. A damaged cursor is a ``FilterError``."""
    after = decode_cursor(flt.after, 1)
    before = None if after else decode_cursor(flt.before, 1, "before")
    cursor = (after or before or [None])[0]
    if cursor is not None and (not isinstance(cursor, str) or stripe_id_problem(cursor)):
        raise FilterError("after" if after else "before", DAMAGED)
    return Cursors(starting_after=cursor if after else None, ending_before=cursor if before else None)


def stripe_page(
    gateway: Gateway,
    resource: str,
    flt: Filter,
    *args: Any,
    what: str,
    stripe_account: str | None = None,
    starting_after: str | None = None,
    ending_before: str | None = None,
    size: int | None = None,
    **params: Any,
) -> Page[dict]:
    """One page of a Stripe list as the list pages show it: the one Stripe list pager of every page that
    lists Stripe itself (Connect accounts, transfers and payouts; Stripe's own events). ``size`` rows (default
    ``flt.size``), newest first, from after ``starting_after`` or before ``ending_before`` (Stripe ids; see
    :func:`filter_cursors`), the filter's ``since``/``until`` as ``created`` bounds, ``params`` that are set
    passed through (``args``: the parent's id of a nested list). ``next_after`` / ``prev_before`` are list-page
    cursors of the last and first row Stripe listed; ``extra["request_id"]`` is Stripe's. A refusal is raised as
    ``StripeFailure`` (with the request id; "no such <what> <args[0]>" when the parent is gone)."""
    query: dict[str, Any] = {
        "limit": size or flt.size,
        **{k: v for k, v in params.items() if v not in (None, "")},
    }
    if starting_after:
        query["starting_after"] = starting_after
    elif ending_before:
        query["ending_before"] = ending_before
    created = {}
    since, until = getattr(flt, "since", None), getattr(flt, "until", None)
    if since:
        created["gte"] = to_unix(since)
    if until:
        created["lt"] = to_unix(until)
    if created:
        query["created"] = created
    try:
        res = gateway.call(resource, "list", *args, params=query, stripe_account=stripe_account)
    except GatewayError as err:
        raise stripe_failure(err, what, args[0] if args else None, with_request=True) from None
    rows = [o for o in res.get("data") or [] if isinstance(o, dict) and o.get("id")]
    more = bool(res.get("has_more"))
    older, newer = (more, True) if starting_after else (True, more) if ending_before else (more, False)
    page: Page[dict] = Page(rows=rows, size=query["limit"])
    if rows:
        page.next_after = encode_cursor([rows[-1]["id"]]) if older else None
        page.prev_before = encode_cursor([rows[0]["id"]]) if newer else None
    page.extra["request_id"] = res.request_id
    return page


def write_after_reading(reader: StripeReader, work: Callable[[], T]) -> T:
    """``work()`` (database writes that read Stripe through ``reader``) in one write transaction
    (``immediate()``) with no request to Stripe inside it.

    SQLite has one writer at a time, so a write transaction that waits for Stripe holds every
    webhook, sign-in and job behind it (and on PostgreSQL its row locks). ``work`` runs with the
    reader answering only from what it has read; when it needs anything else, the transaction is
    rolled back, that is fetched, and ``work`` runs again. Read what ``work`` needs first (as
    ``imports.fetch_subscription`` does) and it runs once. Does not commit."""
    while True:
        immediate()
        try:
            with reader.offline():
                return work()
        except NotFetched as miss:
            db.session.rollback()
            try:
                miss.fetch()
            except GatewayError as err:
                if not err.not_found:
                    raise
                # "no such object" is kept as the answer: ``work`` meets it next time, as it would have


def read_then_write(
    reader: StripeReader,
    action: str,
    ref: tuple[str, str],
    read: Callable[[], R],
    write: Callable[[R], T],
    *,
    audited: Callable[[T], dict[str, Any]] | None = None,
    refused: Callable[[GatewayError], None] | None = None,
) -> T:
    """The one skeleton of a staff action that records what Stripe has (an import, settling an invoice):

    1. ``read()`` asks Stripe for everything the write needs. A refusal is written to the audit log as
       ``action`` on ``ref`` (object type, id) with Stripe's request id, and raised as a ``ServiceError``
       that names the object Stripe lacks (``refused(err)`` runs first, in its own transaction, e.g. to
       mark a link to a deleted customer).
    2. ``write(found)`` runs with :func:`write_after_reading` (no request to Stripe inside the write
       transaction). A ``ServiceError`` it raises, or Stripe failing a late read, rolls everything back.
    3. ``audited(done)`` gives the ``audit.record`` arguments of the success entry (``object_type``,
       ``object_id``, ``parameters``, ``message``; None: ``write`` wrote its own), recorded in the same
       transaction with the first request id of the reads. Commits, and returns what ``write`` returned."""
    object_type, object_id = ref
    try:
        found = read()
    except GatewayError as err:
        db.session.rollback()
        if refused is not None:
            refused(err)
        raise audit.stripe_failed(
            action, err, processor_id=reader.processor.id, object_type=object_type, object_id=object_id
        ) from err
    try:
        done = write_after_reading(reader, lambda: write(found))
        entry = audited(done) if audited is not None else None
    except GatewayError as err:
        db.session.rollback()
        raise stripe_failure(err) from err
    except ServiceError:
        db.session.rollback()
        raise
    if entry is not None:
        audit.record(
            action,
            processor_id=reader.processor.id,
            stripe_request_id=reader.request_ids[0] if reader.request_ids else None,
            commit=False,
            **entry,
        )
    db.session.commit()
    return done


F = TypeVar("F", bound=Callable[..., Any])


def stripe_failures(fn: F) -> F:
    """A service function whose failed Stripe requests reach its callers (views, CLI) as ``StripeFailure``
    (an ``admin.errors.ServiceError``), never as the gateway's own ``GatewayError``."""

    @functools.wraps(fn)
    def translated(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except GatewayError as err:
            raise stripe_failure(err) from err

    return translated  # type: ignore[return-value]
