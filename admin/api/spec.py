"""The OpenAPI document and request validation: one SpecTree (pydantic) instance.

Why spectree: it validates query strings, bodies and responses with pydantic v2 models on a plain Flask
blueprint (no app subclass, as APIFlask and flask-openapi3 need) and writes OpenAPI 3.1 from those same
models, so the document cannot drift from what is checked. pydantic's JSON Schema is draft 2020-12,
which OpenAPI 3.1 uses as it is (nullable fields are ``anyOf [..., null]``), where marshmallow/apispec
(flask-smorest) still write 3.0-style schemas. Its own documentation pages load scripts from a CDN, so
they are switched off: ``/api/docs`` renders the document on the server instead.

List endpoints' query models are generated from the pages' ``Filter`` dataclasses (``filter_query_model``):
every field a query parameter of the same name and label; ``Filter.from_args`` still does the parsing,
exactly as on the page.
"""

from __future__ import annotations

import dataclasses
import typing
from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, create_model
from spectree import Response, SpecTree
from spectree.models import SecureType, SecurityScheme, SecuritySchemeData

from admin.config import VERSION
from admin.listing import PAGE_SIZES, Filter

from .errors import ApiError, code_for


class ErrorBody(BaseModel):
    code: str = Field(
        description="What went wrong, for programs: invalid_request, unauthorized, forbidden, "
        "not_found, conflict, rate_limited, stripe_error, ..."
    )
    message: str = Field(description="What went wrong, for people.")
    field: str | None = Field(description="The input that was wrong, when one was.")


class ErrorResponse(BaseModel):
    error: ErrorBody


def _validation_failed(req, resp, err, instance, model_adapter=None) -> None:
    """Spectree's validation errors in the API's one shape (400, the first problem, naming its field: the
    input the client sent, such as ``metadata``, with the path inside it in the message)."""
    if err is None:
        return
    problems = err.errors(include_context=False) if hasattr(err, "errors") else []
    first = problems[0] if problems else {}
    loc = [str(p) for p in first.get("loc", ()) if not isinstance(p, int)]
    name = loc[0] if loc else None
    message = first.get("msg", "invalid input")
    raise ApiError(400, code_for(400), f"{'.'.join(loc)}: {message}" if name else message, name)


spec = SpecTree(
    "flask",
    mode="strict",
    title="paydesk API",
    version=VERSION,
    description="paydesk's records and Stripe objects for other systems. Authenticate with "
    "`Authorization: Bearer <token>` (tokens are made on /settings/tokens or with "
    "`flask tokens create`). 100 calls per 60 seconds per token.",
    page_templates={},
    annotations=False,
    validation_error_status=400,
    validation_error_model=ErrorResponse,
    before=_validation_failed,
    naming_strategy=lambda model: model.__name__,
    nested_naming_strategy=lambda _parent, child: child,
    security_schemes=[
        SecurityScheme(name="bearer", data=SecuritySchemeData(type=SecureType.HTTP, scheme="bearer"))
    ],
    security={"bearer": []},
)

ERROR_CODES = (400, 401, 403, 404, 429)


def responses(ok: int = 200, model: Any = None, *, extra: tuple[int, ...] = ()) -> Response:
    """A route's documented answers: ``model`` for ``ok``, the error shape for the rest."""
    codes = {f"HTTP_{c}": ErrorResponse for c in (*ERROR_CODES, *extra)}
    codes[f"HTTP_{ok}"] = model
    return Response(**codes)


class Strict(BaseModel):
    """Request bodies: unknown fields refused (a typo is an error, not silently nothing)."""

    model_config = ConfigDict(extra="forbid")


_QUERY_MODELS: dict[type, type[BaseModel]] = {}


def filter_query_model(flt_cls: type[Filter], *, name: str) -> type[BaseModel]:
    """A pydantic model of a page filter's query parameters, for validation and the document."""
    if flt_cls in _QUERY_MODELS:
        return _QUERY_MODELS[flt_cls]
    hints = typing.get_type_hints(flt_cls)
    fields: dict[str, Any] = {}
    for f in dataclasses.fields(flt_cls):
        hint = hints[f.name]
        base = (
            next((a for a in typing.get_args(hint) if a is not type(None)), hint)
            if typing.get_origin(hint) in (typing.Union, __import__("types").UnionType)
            else hint
        )
        choices = f.metadata.get("choices")
        label = flt_cls.label(f.name)
        desc = label + (f" (one of {', '.join(choices)})" if choices else "")
        if f.name == "size":
            fields[f.name] = (
                int | None,
                Field(
                    default=None,
                    ge=1,
                    le=1000,
                    description=(
                        f"Items per page: {' or '.join(str(n) for n in PAGE_SIZES)} (others: {PAGE_SIZES[0]})"
                    ),
                ),
            )
        elif f.name in ("after", "before"):
            fields[f.name] = (
                str | None,
                Field(
                    default=None,
                    max_length=1000,
                    description=(
                        "Cursor: next_cursor of the previous page"
                        if f.name == "after"
                        else "Cursor: the page before"
                    ),
                ),
            )
        elif typing.get_origin(base) is list:
            fields[f.name] = (list[str] | None, Field(default=None, description=desc + "; repeatable"))
        elif base is bool:
            fields[f.name] = (bool | None, Field(default=None, description=desc))
        elif base is int:
            fields[f.name] = (int | None, Field(default=None, ge=0, le=2**31 - 1, description=desc))
        elif base is datetime:
            fields[f.name] = (str | None, Field(default=None, description=desc + " (YYYY-MM-DD or ISO 8601)"))
        else:
            fields[f.name] = (str | None, Field(default=None, max_length=255, description=desc))
    model = create_model(name, **fields)
    _QUERY_MODELS[flt_cls] = model
    return model
