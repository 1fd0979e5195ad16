"""What the Connect services share: the processor and its gateway, Stripe ids checked before Stripe is asked,
whole Stripe lists (persons, a payout's transactions) and the CLI's walk over a list's pages. One page of a
list is ``services/core/stripe_reader.stripe_page``."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

from admin.errors import ServiceError, stripe_failure
from admin.listing import Filter, Page
from admin.models import PaymentProcessor
from admin.services.core.stripe_reader import filter_cursors, stripe_page
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


def list_page(
    flt: Any, resource: str, summary: Callable[[dict], dict], *, what: str, **params: Any
) -> Page[dict]:
    """One page of a Connect list for its filter (``flt.ppid``'s processor; ``core.stripe_reader.stripe_page``
    with the filter's cursors), each row as ``summary`` makes it."""
    gw = gateway(processor_of(flt))
    page = stripe_page(gw, resource, flt, what=what, **filter_cursors(flt), **params)
    page.rows = [summary(r) for r in page.rows]
    return page


def every(
    proc: PaymentProcessor,
    resource: str,
    *args: Any,
    what: str,
    stripe_account: str | None = None,
    most: int = 1000,
    **params: Any,
) -> tuple[list[dict], bool]:
    """Up to ``most`` objects of a Stripe list (100 a request), and whether there were more; ``args``: the
    parent's id of a list under an object (``accounts.persons`` of an account)."""
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


def walk_pages(page_of: Callable[[Any], Page[dict]], flt: Filter, limit: int | None = None) -> Iterator[dict]:
    """The rows of a Stripe-backed list page's filter, page after page (100 a request), read as they are
    taken: at most ``limit`` (the CLI's ``--limit``), or all of them (the CSV export)."""
    flt.size, flt.after, flt.before = 100, None, None
    left = limit
    while left is None or left > 0:
        page = page_of(flt)
        rows = page.rows if left is None else page.rows[:left]
        yield from rows
        if left is not None:
            left -= len(rows)
        if not page.next_after or not rows:
            return
        flt.after = page.next_after
