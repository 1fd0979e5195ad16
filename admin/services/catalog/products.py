"""Stripe products, made and changed through the gateway and recorded locally (``product`` table).

The connector's fields: name, active, caption, description, images (up to 8 URLs), shippable, url. Stripe
no longer takes ``caption`` (it refuses unknown parameters), so paydesk keeps it in its own record only.
Each create or update is audited in the transaction that records it, with Stripe's request id.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar

from sqlalchemy import Select, or_, select

from admin.dbutil import immediate
from admin.errors import stripe_failure
from admin.extensions import db
from admin.listing import Filter, Page, keyset_page, processor_field
from admin.models import PaymentProcessor, Product
from admin.services.core import audit
from admin.services.core.idempotency import idempotency_key
from admin.stripe_gateway import Gateway, GatewayError

FIELDS = ("name", "active", "description", "images", "shippable", "url")  # what Stripe takes


def _params(values: dict[str, Any]) -> dict[str, Any]:
    params = {k: v for k, v in values.items() if k in FIELDS and v is not None}
    if "images" in values and values["images"] is not None:
        params["images"] = list(values["images"]) or ""  # an empty list clears them (form encoding)
    return params


def _record(processor: PaymentProcessor, obj: dict[str, Any], values: dict[str, Any]) -> Product:
    row = db.session.scalar(
        select(Product).where(Product.processor_id == processor.id, Product.product_id == obj["id"])
    )
    if row is None:
        row = Product(processor_id=processor.id, product_id=obj["id"])
        db.session.add(row)
    row.name = obj.get("name") or row.name or obj["id"]
    row.active = bool(obj.get("active", True))
    if "caption" in values:
        row.caption = values["caption"]
    row.description = obj.get("description")
    row.images = list(obj.get("images") or [])
    row.shippable = obj.get("shippable")
    row.url = obj.get("url")
    return row


def create_product(
    processor: PaymentProcessor, values: dict[str, Any], *, action_key: str | None = None
) -> tuple[Product, dict[str, Any]]:
    """A new Stripe product, recorded. ``values``: the connector's fields (``id`` optional); ``action_key``:
    the action's part of Stripe's idempotency key (``core.idempotency``; the API's from the token and the
    client's key). Commits."""
    params = _params(values)
    if values.get("id"):
        params["id"] = values["id"]
    key = idempotency_key("product", None, action_key)
    try:
        obj = Gateway.for_processor(processor).create("products", params, idempotency_key=key)
    except GatewayError as err:
        raise audit.stripe_failed(
            "product.create",
            err,
            processor_id=processor.id,
            object_type="product",
            object_id=values.get("id"),
            doing="did not create the product",
        ) from err
    immediate()
    row = _record(processor, dict(obj), values)
    db.session.flush()
    audit.record(
        "product.create",
        object_type="product",
        object_id=obj["id"],
        processor_id=processor.id,
        parameters={k: v for k, v in params.items() if k != "description"},
        stripe_request_id=obj.request_id,
        commit=False,
    )
    db.session.commit()
    return row, dict(obj)


def update_product(
    processor: PaymentProcessor, product_id: str, values: dict[str, Any]
) -> tuple[Product, dict[str, Any]]:
    """Change a Stripe product (only the fields given), recorded. Commits."""
    params = _params(values)
    try:
        gateway = Gateway.for_processor(processor)
        # Nothing for Stripe (only paydesk's caption): read the product rather than send an empty update.
        obj = (
            gateway.update("products", product_id, params)
            if params
            else gateway.retrieve("products", product_id)
        )
    except GatewayError as err:
        if err.not_found:
            db.session.rollback()
            raise stripe_failure(err, "product", product_id) from err
        raise audit.stripe_failed(
            "product.update", err, processor_id=processor.id, object_type="product", object_id=product_id
        ) from err
    immediate()
    row = _record(processor, dict(obj), values)
    audit.record(
        "product.update",
        object_type="product",
        object_id=product_id,
        processor_id=processor.id,
        parameters={k: v for k, v in params.items() if k != "description"},
        stripe_request_id=obj.request_id,
        commit=False,
    )
    db.session.commit()
    return row, dict(obj)


def get_product(processor: PaymentProcessor, product_id: str) -> tuple[Product | None, dict[str, Any]]:
    """The product as Stripe has it now, and paydesk's record of it (None when paydesk has none)."""
    try:
        obj = Gateway.for_processor(processor).retrieve("products", product_id)
    except GatewayError as err:
        raise stripe_failure(err, "product", product_id) from err
    row = db.session.scalar(
        select(Product).where(Product.processor_id == processor.id, Product.product_id == product_id)
    )
    return row, dict(obj)


@dataclass
class ProductFilter(Filter):
    LABELS: ClassVar[dict[str, str]] = {"q": "Name or product id"}

    ppid: int | None = processor_field()
    active: str | None = field(default=None, metadata={"choices": ("yes", "no")})
    q: str | None = None


def product_query(flt: ProductFilter) -> Select:
    q = select(Product)
    if flt.ppid is not None:
        q = q.where(Product.processor_id == flt.ppid)
    if flt.active:
        q = q.where(Product.active.is_(flt.active == "yes"))
    if flt.q:
        text = flt.q.strip()
        q = q.where(or_(Product.product_id == text, Product.name == text))
    return q


def product_page(flt: ProductFilter) -> Page:
    return keyset_page(product_query(flt), [Product.id], flt)
