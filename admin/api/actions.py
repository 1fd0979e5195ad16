"""Actions: customers get/create/update (the Stripe customer and its paydesk contact) and products
create/update/get, through the same services as the pages and the CLI. Writes take ``Idempotency-Key``."""

from __future__ import annotations

import re
from typing import Any

from pydantic import BaseModel, Field

from admin.models import PaymentProcessor
from admin.services.catalog import products
from admin.services.records import customers
from admin.services.settings.processors import get_processor
from admin.timeutil import from_unix

from . import schemas
from .blueprint import bp
from .errors import ApiError
from .idempotency import idempotent, stripe_key
from .lists import product_json
from .spec import Strict, responses, spec

STRIPE_ID = re.compile(r"[A-Za-z0-9_\-]{1,255}")
# Answers of a route that asks Stripe: 502 Stripe refused, 503 Stripe unreachable or busy (try again later);
# writes add 409 (Idempotency-Key) and 415, and 402 where a card can be declined.
STRIPE_READ = (502, 503)
STRIPE_WRITE = (409, 415, 502, 503)


class ProcessorQuery(Strict):
    ppid: int | None = Field(
        default=None, ge=1, le=2**31 - 1, description="Payment processor id; left out: the default processor."
    )


class WriteHeaders(BaseModel):
    idempotency_key: str | None = Field(
        default=None,
        alias="Idempotency-Key",
        max_length=255,
        description="Send the same request again with the same key: the first answer comes back and nothing "
        "is done twice; the key with another request is 409. Keys are remembered 24 hours, as at Stripe "
        "(PAYDESK_RETENTION_API_IDEMPOTENCY_KEYS); after that the same key is a new request.",
    )


def request_processor() -> PaymentProcessor:
    """The processor the request's ``ppid`` names (validated by ``ProcessorQuery``), else the default one."""
    query = _query()
    return get_processor(query.ppid if query is not None else None)


def _checked_id(value: str, what: str) -> str:
    if not STRIPE_ID.fullmatch(value or ""):
        raise ApiError(404, "not_found", f"There is no {what} {value[:60]!r}.")
    return value


def _query():
    from flask import request

    return request.context.query


def request_body() -> Any:
    """The request's JSON body as its schema validated it."""
    from flask import request

    return request.context.json  # type: ignore[attr-defined]  # spectree puts the validated body there


def customer_json(cus: dict, link: Any, processor_id: int) -> dict:
    contact = link.contact if link is not None else None
    discount = cus.get("discount")
    if isinstance(discount, dict):
        coupon = discount.get("coupon")
        discount = (coupon.get("id") if isinstance(coupon, dict) else coupon) or discount.get("id")
    balance = cus.get("balance", cus.get("account_balance"))
    return schemas.CustomerOut(
        id=cus["id"],
        account_balance=balance if isinstance(balance, int) else None,
        created=from_unix(cus["created"]) if cus.get("created") else None,
        currency=cus.get("currency"),
        delinquent=cus.get("delinquent"),
        description=cus.get("description"),
        discount=discount if isinstance(discount, str) else None,
        email=cus.get("email"),
        processor_id=processor_id,
        contact_id=contact.id if contact else None,
        contact=schemas.ContactOut.model_validate(contact) if contact else None,
        metadata={str(k): str(v) for k, v in (cus.get("metadata") or {}).items()},
    ).model_dump(mode="json")


# -- customers --------------------------------------------------------------------------------


@bp.get("/customers/<customer_id>")
@spec.validate(
    query=ProcessorQuery,
    resp=responses(200, schemas.CustomerOut, extra=STRIPE_READ),
    tags=["customers"],
    operation_id="get_customer",
)
def get_customer(customer_id: str):
    """Get a customer: the Stripe customer and the paydesk contact linked to it"""
    processor = request_processor()
    cus, link = customers.get_customer(processor, _checked_id(customer_id, "customer"))
    return customer_json(cus, link, processor.id)


@bp.post("/customers")
@spec.validate(
    query=ProcessorQuery,
    json=schemas.CreateCustomerBody,
    headers=WriteHeaders,
    resp=responses(201, schemas.CustomerOut, extra=STRIPE_WRITE),
    tags=["customers"],
    operation_id="create_customer",
)
@idempotent
def create_customer():
    """Create a customer: a Stripe customer with paydesk's metadata, and its contact (new, or contact_id)"""
    processor = request_processor()
    body = request_body()
    cus, link = customers.create_for_api(
        processor,
        name=body.name,
        email=body.email,
        description=body.description,
        contact_id=body.contact_id,
        idempotency_key=stripe_key(f"customer-{processor.id}"),
    )
    return customer_json(cus, link, processor.id), 201


@bp.post("/customers/<customer_id>")
@spec.validate(
    query=ProcessorQuery,
    json=schemas.UpdateCustomerBody,
    headers=WriteHeaders,
    resp=responses(200, schemas.CustomerOut, extra=STRIPE_WRITE),
    tags=["customers"],
    operation_id="update_customer",
)
@idempotent
def update_customer(customer_id: str):
    """Update a customer: email and description (empty unsets), and the linked contact's name and email"""
    processor = request_processor()
    body = request_body()
    cus, link = customers.update_for_api(
        processor,
        _checked_id(customer_id, "customer"),
        name=body.name,
        email=body.email,
        description=body.description,
    )
    return customer_json(cus, link, processor.id)


# -- products ---------------------------------------------------------------------------------


def _values(body: Any) -> dict[str, Any]:
    values = body.model_dump(exclude_unset=True, mode="json")
    return values


@bp.post("/products")
@spec.validate(
    query=ProcessorQuery,
    json=schemas.CreateProductBody,
    headers=WriteHeaders,
    resp=responses(201, schemas.ProductOut, extra=STRIPE_WRITE),
    tags=["products"],
    operation_id="create_product",
)
@idempotent
def create_product():
    """Create a product in Stripe, recorded in paydesk"""
    processor = request_processor()
    row, obj = products.create_product(
        processor, _values(request_body()), action_key=stripe_key(f"product-{processor.id}")
    )
    return product_json(row, obj, processor.id), 201


@bp.get("/products/<product_id>")
@spec.validate(
    query=ProcessorQuery,
    resp=responses(200, schemas.ProductOut, extra=STRIPE_READ),
    tags=["products"],
    operation_id="get_product",
)
def get_product(product_id: str):
    """Get a product as Stripe has it, with paydesk's record of it"""
    processor = request_processor()
    row, obj = products.get_product(processor, _checked_id(product_id, "product"))
    return product_json(row, obj, processor.id)


@bp.post("/products/<product_id>")
@spec.validate(
    query=ProcessorQuery,
    json=schemas.UpdateProductBody,
    headers=WriteHeaders,
    resp=responses(200, schemas.ProductOut, extra=STRIPE_WRITE),
    tags=["products"],
    operation_id="update_product",
)
@idempotent
def update_product(product_id: str):
    """Update a product: only the fields sent change"""
    processor = request_processor()
    row, obj = products.update_product(processor, _checked_id(product_id, "product"), _values(request_body()))
    return product_json(row, obj, processor.id)
