"""The API's one error shape: ``{"error": {"code", "message", "field"}}``, for every status it answers."""

from __future__ import annotations

from flask import jsonify, make_response

from admin.errors import StripeFailure


class ApiError(Exception):
    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        field: str | None = None,
        headers: dict[str, str] | None = None,
    ):
        super().__init__(message)
        self.status, self.code, self.message, self.field = status, code, message, field
        self.headers = headers or {}


def error_response(
    status: int, code: str, message: str, field: str | None = None, headers: dict[str, str] | None = None
):
    resp = make_response(jsonify(error={"code": code, "message": message, "field": field}), status)
    for name, value in (headers or {}).items():
        resp.headers[name] = value
    return resp


CODES = {
    400: "invalid_request",
    401: "unauthorized",
    402: "card_error",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    409: "conflict",
    413: "too_large",
    415: "unsupported_media_type",
    422: "invalid_request",
    429: "rate_limited",
    500: "server_error",
    502: "stripe_error",
    503: "unavailable",
}


def code_for(status: int) -> str:
    return CODES.get(status, "error")


RETRY_AFTER = "5"  # seconds a client waits after a 503 (Stripe unreachable or busy after paydesk's retries)


def api_error_response(err: Exception):
    """An ``ApiError`` or a service's ``ServiceError`` in the one shape (a Stripe object that is not there: 404).
    A failed Stripe request (``StripeFailure``): 503 when it is worth trying again later (Stripe unreachable,
    busy or failing, after paydesk's own retries), 402 for a declined card, else 502; any other refusal 400."""
    if isinstance(err, ApiError):
        return error_response(err.status, err.code, err.message, err.field, err.headers)
    message = getattr(err, "message", str(err))
    if getattr(err, "not_found", False):
        return error_response(404, "not_found", message, getattr(err, "field", None))
    if isinstance(err, StripeFailure):
        if err.transient:
            return error_response(503, "unavailable", message, None, {"Retry-After": RETRY_AFTER})
        if err.card:
            return error_response(402, "card_error", message, getattr(err, "field", None))
        return error_response(502, "stripe_error", message, getattr(err, "field", None))
    return error_response(400, "invalid_request", message, getattr(err, "field", None))
