"""What the Connect services share: one page of a Stripe list as a keyset ``Page`` (Stripe's own cursors,
``starting_after`` / ``ending_before``, carried as the list pattern's ``after`` / ``before``), Stripe ids
checked before Stripe is asked, refusals with their request id."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from admin.errors import ServiceError, stripe_failure
from admin.listing import DAMAGED, Filter, FilterError, Page, decode_cursor, encode_cursor
from admin.models import PaymentProcessor
from admin.services.settings import processors
from admin.stripe_gateway import Gateway, GatewayError
from admin.stripe_shapes import stripe_id_problem


def processor_of(flt_or_ppid: Any) -> PaymentProcessor:
    ppid = getattr(flt_or_ppid, "ppid", flt_or_ppid)
    return processors.get_processor(ppid)


def gateway(proc: PaymentProcessor) -> Gateway:
    return processors.gateway(proc)


def check_id(value: str | None, kind: str, field: str) -> str:
    value = (value or "").strip()
    problem = stripe_id_problem(value, kind) if value else f"give the {kind.replace('_', ' ')} id"
    if problem:
        raise ServiceError(problem, field=field)
    return value


def _unix(value: datetime) -> int:
    return int(value.replace(tzinfo=UTC).timestamp())


def stripe_page(
    proc: PaymentProcessor,
    resource: str,
    flt: Filter,
    *args: Any,
    what: str,
    stripe_account: str | None = None,
    **params: Any,
) -> Page[dict]:
    """One page of a Stripe list, newest first, as the list pages show any list: ``flt.size`` rows, the
    filter's ``since``/``until`` as ``created`` bounds, ``after``/``before`` cursors. Raises ``ServiceError``
    (with the request id) when Stripe refuses."""
    after = decode_cursor(flt.after, 1)
    before = None if after else decode_cursor(flt.before, 1, "before")
    cursor = (after or before or [None])[0]
    if cursor is not None and (not isinstance(cursor, str) or stripe_id_problem(cursor)):
        raise FilterError("after" if after else "before", DAMAGED)
    query: dict[str, Any] = {"limit": flt.size, **{k: v for k, v in params.items() if v not in (None, "")}}
    if after:
        query["starting_after"] = cursor
    elif before:
        query["ending_before"] = cursor
    created = {}
    since, until = getattr(flt, "since", None), getattr(flt, "until", None)
    if since:
        created["gte"] = _unix(since)
    if until:
        created["lt"] = _unix(until)
    if created:
        query["created"] = created
    try:
        res = gateway(proc).call(resource, "list", *args, params=query, stripe_account=stripe_account)
    except GatewayError as err:
        raise stripe_failure(err, what, args[0] if args else None, with_request=True) from None
    rows = list(res.get("data") or [])
    more = bool(res.get("has_more"))
    older, newer = (more, True) if after else (True, more) if before else (more, False)
    page: Page[dict] = Page(rows=rows, size=flt.size)
    if rows:
        page.next_after = encode_cursor([rows[-1]["id"]]) if older else None
        page.prev_before = encode_cursor([rows[0]["id"]]) if newer else None
    page.extra["request_id"] = res.request_id
    return page


def every(
    proc: PaymentProcessor,
    resource: str,
    *,
    what: str,
    stripe_account: str | None = None,
    most: int = 1000,
    **params: Any,
) -> tuple[list[dict], bool]:
    """Up to ``most`` objects of a Stripe list (100 a request), and whether there were more."""
    return every_nested(proc, resource, what=what, stripe_account=stripe_account, most=most, **params)


def every_nested(
    proc: PaymentProcessor,
    resource: str,
    *args: Any,
    what: str,
    stripe_account: str | None = None,
    most: int = 1000,
    **params: Any,
) -> tuple[list[dict], bool]:
    """``every`` for a list under an object (``accounts.persons`` of an account: ``args`` = its id)."""
    out: list[dict] = []
    query = {"limit": 100, **params}
    while True:
        try:
            res = gateway(proc).call(resource, "list", *args, params=query, stripe_account=stripe_account)
        except GatewayError as err:
            raise stripe_failure(err, what, args[0] if args else None, with_request=True) from None
        data = list(res.get("data") or [])
        out.extend(data)
        if not res.get("has_more") or not data:
            return out, False
        if len(out) >= most:
            return out[:most], True
        query["starting_after"] = data[-1]["id"]


def walk_pages(page_of: Any, flt: Filter, limit: int) -> list[dict]:
    """Up to ``limit`` rows of a Stripe-backed list, page after page (the CLI's ``--limit``)."""
    flt.size, flt.after, flt.before = 100, None, None
    out: list[dict] = []
    while len(out) < limit:
        page = page_of(flt)
        out.extend(page.rows)
        if not page.next_after:
            break
        flt.after = page.next_after
    return out[:limit]
