"""Read-only lists: contributions, payments, subscriptions, intents, events, jobs, audit (and products).

Each takes exactly its page's filter (the same ``Filter`` class, read with ``Filter.from_args``) and pages
with the page's keyset cursors: ``next_cursor`` goes back as ``after``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from flask import request
from pydantic import BaseModel

from admin.listing import Filter, FilterError
from admin.services.catalog import products
from admin.services.core import audit, jobs
from admin.services.events import queries as events
from admin.services.intents import queries as intents
from admin.services.records import common as records
from admin.services.records import subscriptions

from . import schemas
from .blueprint import bp
from .errors import ApiError
from .spec import filter_query_model, responses, spec


def filter_or_400(flt_cls: type[Filter], check: Callable[[Any, dict[str, str]], None] | None = None) -> Any:
    flt, errors = flt_cls.from_args(request.args)
    if check:
        check(flt, errors)
    if errors:
        name, message = next(iter(errors.items()))
        raise ApiError(400, "invalid_request", f"{name}: {message}", name)
    return flt


def page_json(flt: Any, page_fn: Callable, out: Callable[[Any], dict]) -> dict:
    try:
        page = page_fn(flt)
    except FilterError as err:
        raise ApiError(400, "invalid_request", f"{err.field}: {err.message}", err.field) from None
    return {
        "data": [out(row) for row in page.rows],
        "has_more": bool(page.next_after),
        "next_cursor": page.next_after,
    }


def _local_events_only(flt: Any, errors: dict[str, str]) -> None:
    if flt.source != "local":
        errors["source"] = "the API lists paydesk's own log of events (source=local)"


def _list_route(
    name: str,
    flt_cls: type,
    page_fn: Callable,
    item: type[BaseModel],
    listing: type[BaseModel],
    summary: str,
    check: Callable | None = None,
) -> None:
    def view():
        flt = filter_or_400(flt_cls, check)
        return page_json(flt, page_fn, lambda row: item.model_validate(row).model_dump(mode="json"))

    view.__name__ = f"list_{name}"
    view.__doc__ = summary
    validated = spec.validate(
        query=filter_query_model(flt_cls, name=f"{flt_cls.__name__}Query"),
        resp=responses(200, listing),
        tags=["lists"],
        operation_id=f"list_{name}",
    )(view)
    bp.add_url_rule(f"/{name}", endpoint=f"list_{name}", view_func=validated, methods=["GET"])


_list_route(
    "contributions",
    records.ContributionFilter,
    records.contribution_page,
    schemas.ContributionOut,
    schemas.ContributionList,
    "Contributions, newest first (the /contributions page's filter)",
)
_list_route(
    "payments",
    records.PaymentFilter,
    records.payment_page,
    schemas.PaymentOut,
    schemas.PaymentList,
    "Payments and refunds, newest first (the /payments page's filter)",
)
_list_route(
    "subscriptions",
    subscriptions.SubscriptionFilter,
    subscriptions.subscription_page,
    schemas.SubscriptionOut,
    schemas.SubscriptionList,
    "Recurring contributions, newest first (the /subscriptions page's filter)",
)
_list_route(
    "intents",
    intents.IntentFilter,
    intents.intent_page,
    schemas.IntentOut,
    schemas.IntentList,
    "Payment intents, newest first (the /intents page's filter)",
)
_list_route(
    "events",
    events.EventFilter,
    events.local_page,
    schemas.EventOut,
    schemas.EventList,
    "Stripe events paydesk has logged, newest first (the /events page's filter, local source)",
    check=_local_events_only,
)
_list_route(
    "jobs",
    jobs.JobFilter,
    jobs.job_page,
    schemas.JobOut,
    schemas.JobList,
    "Background jobs, newest first (the /jobs page's filter)",
)
_list_route(
    "audit",
    audit.AuditFilter,
    audit.audit_page,
    schemas.AuditOut,
    schemas.AuditList,
    "The audit log, newest first (the /audit page's filter)",
)


def product_json(row: Any, obj: dict | None = None, processor_id: int | None = None) -> dict:
    """A product as the connector's Product_Response, with paydesk's id (``obj``: as Stripe has it now)."""
    from admin.timeutil import from_unix

    if obj is None:
        return schemas.ProductOut(
            id=row.product_id,
            paydesk_id=row.id,
            processor_id=row.processor_id,
            name=row.name,
            active=row.active,
            caption=row.caption,
            description=row.description,
            images=list(row.images or []),
            shippable=row.shippable,
            url=row.url,
            created=row.created_at,
            updated=row.updated_at,
        ).model_dump(mode="json")
    owner = row.processor_id if row else processor_id
    if owner is None:  # what ProductOut would refuse: its processor is required
        raise ValueError("product_json: a product paydesk has no row of needs its processor_id")
    return schemas.ProductOut(
        id=obj["id"],
        paydesk_id=row.id if row else None,
        processor_id=owner,
        name=obj.get("name") or obj["id"],
        active=bool(obj.get("active", True)),
        caption=row.caption if row else None,
        description=obj.get("description"),
        images=list(obj.get("images") or []),
        shippable=obj.get("shippable"),
        url=obj.get("url"),
        created=from_unix(obj["created"]) if obj.get("created") else None,
        updated=from_unix(obj["updated"]) if obj.get("updated") else None,
    ).model_dump(mode="json")


@bp.get("/products")
@spec.validate(
    query=filter_query_model(products.ProductFilter, name="ProductFilterQuery"),
    resp=responses(200, schemas.ProductList),
    tags=["products"],
    operation_id="list_products",
)
def list_products():
    """Products made or changed through paydesk, newest first"""
    return page_json(filter_or_400(products.ProductFilter), products.product_page, product_json)
